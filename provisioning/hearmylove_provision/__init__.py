"""From a blank SD card to a speaking speaker: image build, per-device identity, flasher, first boot."""
