"""The files the image build adds to Debian's root: mounts, network, GPIO access, units and drop-ins.

Kept as data so the build is one readable list. Everything per-device (Wi-Fi, broker,
timezone, sound) comes later from the identity at first boot; these are the same on every
speaker.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

FSTAB = """\
# <file system>   <mount point>    <type>  <options>                                   <dump> <pass>
LABEL={root}      /                ext4    defaults,noatime,commit=60                   0      1
# The firmware partition holds the identity (with secrets) until first boot: root only.
LABEL={firmware}  /boot/firmware   vfat    defaults,noatime,fmask=0177,dmask=0077       0      2
"""

WIRED = """\
[Match]
Name=eth* en*

[Network]
DHCP=yes
"""

# Debian's /dev/gpiochip* are root-only; the daemon reaches the buttons and LED as group gpio.
GPIO_RULES = 'SUBSYSTEM=="gpio", KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"\n'

DAEMON_DROPIN = """\
# Added by the image build: per-device environment written by first boot
# (HEARMYLOVE_AUDIO_PACE=1 on a speaker with no sound card).
[Service]
EnvironmentFile=-/etc/hearmylove/environment
"""

WPA_DROPIN = """\
# Added by the image build: Wi-Fi starts only once first boot has written its configuration.
[Unit]
ConditionPathExists=/etc/wpa_supplicant/wpa_supplicant-%i.conf
"""

WAIT_ONLINE_DROPIN = """\
# Added by the image build: online as soon as one link (Wi-Fi or cable) is, not all of them.
[Service]
ExecStart=
ExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=90
"""

RASPI_FIRMWARE = """\
# Read by raspi-firmware's kernel hook when it writes cmdline.txt and config.txt.
ROOTPART=LABEL={root}
CONSOLES="ttyS1,115200 tty0"
CMA=64M
KERNEL_ARCH=arm64
"""

RASPI_CUSTOM = """\
# Appended to config.txt: the speaker's sound comes from the on-board audio or a DAC HAT.
dtparam=audio=on
"""


def root_files(hostname: str, root_label: str, firmware_label: str) -> dict[str, tuple[str | bytes, int]]:
    """Path inside the root -> (content, mode)."""
    units = REPO / "systemd"
    files: dict[str, tuple[str | bytes, int]] = {
        "etc/fstab": (FSTAB.format(root=root_label, firmware=firmware_label), 0o644),
        "etc/hostname": (f"{hostname}\n", 0o644),
        "etc/hosts": (f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n::1\t\tlocalhost ip6-localhost\n", 0o644),
        "etc/systemd/network/20-wired.network": (WIRED, 0o644),
        "etc/udev/rules.d/60-gpio.rules": (GPIO_RULES, 0o644),
        "etc/systemd/system/hearmylove.service": ((units / "hearmylove.service").read_text(), 0o644),
        "etc/systemd/system/hearmylove-firstboot.service": (
            (units / "hearmylove-firstboot.service").read_text(),
            0o644,
        ),
        "etc/systemd/system/hearmylove.service.d/provision.conf": (DAEMON_DROPIN, 0o644),
        "etc/systemd/system/wpa_supplicant@.service.d/hearmylove.conf": (WPA_DROPIN, 0o644),
        "etc/systemd/system/systemd-networkd-wait-online.service.d/any.conf": (WAIT_ONLINE_DROPIN, 0o644),
        "etc/default/raspi-firmware": (RASPI_FIRMWARE.format(root=root_label), 0o644),
        "etc/default/raspi-firmware-custom": (RASPI_CUSTOM, 0o644),
    }
    for doc in ("daemon.md", "provisioning.md"):
        if (REPO / "docs" / doc).exists():
            files[f"opt/hearmylove/docs/{doc}"] = ((REPO / "docs" / doc).read_text(), 0o644)
    return files
