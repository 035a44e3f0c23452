"""The flasher writes only where it should, reads back what it wrote, then adds the identity."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hearmylove_provision.cli import main
from hearmylove_provision.errors import UnsafeTargetError, VerifyError
from hearmylove_provision.fatfs import FOLDER, FatVolume, firmware_partition
from hearmylove_provision.flash import SystemView, Target, check_target, flash, verify, write_image
from hearmylove_provision.identity import load, write_to

from .provision_helpers import fat_image, identity_data, need, write_identity


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return fat_image(tmp_path / "hearmylove.img")


@pytest.fixture
def kid(tmp_path: Path) -> Path:
    return write_identity(tmp_path, identity_data(tmp_path))


@pytest.mark.fast
def test_the_identity_goes_onto_the_fat_partition_and_replaces_an_older_one(image: Path, kid: Path) -> None:
    need("mcopy")
    assert firmware_partition(image).start == 1 << 20
    fat = FatVolume(image)
    fat.write_folder({"stale.txt": b"old"})
    names = write_to(image, load(kid))
    assert fat.listdir() == names == ["ca.crt", "identity.toml"]
    assert b'device_id = "kid-001"' in fat.read("identity.toml")
    assert fat.read("ca.crt") == (kid.parent / "family-ca.crt").read_bytes()


@pytest.mark.fast
def test_identity_write_command(image: Path, kid: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["identity", "write", "--image", str(image), "--identity", str(kid)]) == 0
    assert "identity of kid-001 written" in capsys.readouterr().out
    assert "identity.toml" in FatVolume(image).listdir(FOLDER)


@pytest.mark.fast
def test_flash_to_a_file_writes_verifies_and_adds_the_identity(image: Path, kid: Path, tmp_path: Path) -> None:
    card = tmp_path / "card.img"
    seen: list[str] = []
    assert main(["flash", "--image", str(image), "--device", str(card), "--identity", str(kid), "--to-file"]) == 0
    digest = flash(image, check_target(card, image, to_file=True), lambda stage, f: seen.append(stage))
    assert {"write", "sync", "verify"} <= set(seen) and len(digest) == 64
    assert card.read_bytes() == image.read_bytes()  # flash() alone does not add the identity
    write_to(card, load(kid))
    assert FatVolume(card).listdir() == ["ca.crt", "identity.toml"]


@pytest.mark.fast
def test_a_corrupted_read_back_is_detected(image: Path, tmp_path: Path) -> None:
    card = tmp_path / "card.img"
    digest = write_image(image, card, create=True)
    with open(card, "r+b") as f:  # a fake-capacity card drops a block
        f.seek(3 << 20)
        f.write(b"\xff" * 512)
    with pytest.raises(VerifyError, match="does not read back what was written"):
        verify(card, image.stat().st_size, digest)
    os.truncate(card, 1 << 20)
    with pytest.raises(VerifyError, match="returned only"):
        verify(card, image.stat().st_size, digest)


@pytest.mark.fast
def test_a_bad_identity_is_refused_before_the_disk_is_touched(
    image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write_identity(tmp_path, identity_data(tmp_path, wifi={"ssid": "Home", "passphrase": "short"}), "bad.toml")
    card = tmp_path / "card.img"
    card.write_bytes(b"precious")
    assert main(["flash", "--image", str(image), "--device", str(card), "--identity", str(bad)]) == 1
    assert "wifi.passphrase" in capsys.readouterr().err
    assert card.read_bytes() == b"precious"


@pytest.mark.fast
def test_the_disk_this_machine_runs_from_is_refused(image: Path, kid: Path) -> None:
    # The real root disk: only checked, never opened for writing (check_target raises first).
    disk = SystemView().disk_of(f"{os.major(os.stat('/').st_dev)}:{os.minor(os.stat('/').st_dev)}")
    if disk is None or not Path(f"/dev/{disk}").exists():
        pytest.skip("/ is not on a block device here (overlay or container root)")
    with pytest.raises(UnsafeTargetError, match="this machine runs from"):
        check_target(Path(f"/dev/{disk}"), image, force=True)
    assert main(["flash", "--image", str(image), "--device", f"/dev/{disk}", "--identity", str(kid), "--force"]) == 1


@pytest.mark.fast
def test_the_image_itself_and_a_character_device_are_refused(image: Path) -> None:
    with pytest.raises(UnsafeTargetError, match="the image itself"):
        check_target(image, image, to_file=True)
    with pytest.raises(UnsafeTargetError, match="is not a block device"):
        check_target(Path("/dev/null"), image)
    with pytest.raises(UnsafeTargetError, match="not a regular file"):
        check_target(image.parent, image, to_file=True)


@pytest.mark.fast
def test_a_missing_device_is_refused_and_no_file_is_created(
    image: Path, kid: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # As on a machine with no /dev/sda: a mistyped or unplugged card must not become a file.
    missing = tmp_path / "dev" / "sda"
    missing.parent.mkdir()
    assert main(["flash", "--image", str(image), "--device", str(missing), "--identity", str(kid)]) == 1
    assert "does not exist: no card is there" in capsys.readouterr().err
    assert not missing.exists() and list(missing.parent.iterdir()) == []
    with pytest.raises(UnsafeTargetError, match="does not exist"):
        check_target(Path("/dev/sd-hml-missing"), image)  # the real /dev: checked, never opened
    with pytest.raises(FileNotFoundError):
        write_image(image, missing)  # even past the check, the writer never creates a device path
    assert not missing.exists()


@pytest.mark.fast
def test_a_regular_file_is_refused_unless_asked_for_with_to_file(
    image: Path, kid: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    card = tmp_path / "card.img"
    card.write_bytes(b"precious")
    assert main(["flash", "--image", str(image), "--device", str(card), "--identity", str(kid)]) == 1
    assert "is a regular file, not a card; to write the image into a file, add --to-file" in capsys.readouterr().err
    assert card.read_bytes() == b"precious"
    with pytest.raises(UnsafeTargetError, match="never written under /dev"):
        check_target(Path("/dev/sd-hml-missing"), image, to_file=True)


# A fake /sys and mountinfo: one card reader "sdb" (8:16) with a partition sdb1 (8:17).


def fake_system(tmp_path: Path, mountinfo: str, removable: str = "1", slaves: bool = False) -> SystemView:
    sys_root = tmp_path / "sys"
    disk = sys_root / "devices" / "usb" / "block" / "sdb"
    (disk / "sdb1").mkdir(parents=True)
    (disk / "dev").write_text("8:16\n")
    (disk / "removable").write_text(f"{removable}\n")
    (disk / "size").write_text(f"{(1 << 30) // 512}\n")
    (disk / "sdb1" / "dev").write_text("8:17\n")
    (disk / "sdb1" / "partition").write_text("1\n")
    (sys_root / "dev" / "block").mkdir(parents=True)
    (sys_root / "block").mkdir()
    (sys_root / "block" / "sdb").symlink_to(disk)
    (sys_root / "dev" / "block" / "8:16").symlink_to(disk)
    (sys_root / "dev" / "block" / "8:17").symlink_to(disk / "sdb1")
    if slaves:  # dm-0 (253:0), e.g. an encrypted root, sits on sdb1
        dm = sys_root / "devices" / "virtual" / "block" / "dm-0"
        (dm / "slaves").mkdir(parents=True)
        (dm / "dev").write_text("253:0\n")
        (dm / "slaves" / "sdb1").symlink_to(disk / "sdb1")
        (sys_root / "block" / "dm-0").symlink_to(dm)
        (sys_root / "dev" / "block" / "253:0").symlink_to(dm)
    (tmp_path / "mountinfo").write_text(mountinfo)
    return SystemView(sys_root, tmp_path / "mountinfo", tmp_path / "no-swaps")


@pytest.fixture
def sdb(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """Device nodes for the fake disk and its partition (mknod needs root)."""
    nodes = tmp_path / "dev"
    nodes.mkdir()
    try:
        os.mknod(nodes / "sdb", 0o600 | 0o060000, os.makedev(8, 16))
        os.mknod(nodes / "sdb1", 0o600 | 0o060000, os.makedev(8, 17))
    except PermissionError:
        pytest.skip("mknod needs root")
    yield nodes / "sdb", nodes / "sdb1"


ROOT_ELSEWHERE = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"


@pytest.mark.fast
def test_a_disk_with_a_mounted_partition_is_refused(tmp_path: Path, image: Path, sdb: tuple[Path, Path]) -> None:
    view = fake_system(tmp_path, ROOT_ELSEWHERE + "60 27 8:17 / /media/card rw - vfat /dev/sdb1 rw\n")
    with pytest.raises(UnsafeTargetError, match="mounted at /media/card"):
        check_target(sdb[0], image, force=True, view=view)


@pytest.mark.fast
def test_a_free_removable_card_is_accepted_and_a_partition_is_not(
    tmp_path: Path, image: Path, sdb: tuple[Path, Path]
) -> None:
    view = fake_system(tmp_path, ROOT_ELSEWHERE)
    assert check_target(sdb[0], image, view=view) == Target(sdb[0], "sdb", [])
    with pytest.raises(UnsafeTargetError, match="is a partition of sdb; give the whole card: /dev/sdb"):
        check_target(sdb[1], image, view=view)


@pytest.mark.fast
def test_a_fixed_disk_needs_force(tmp_path: Path, image: Path, sdb: tuple[Path, Path]) -> None:
    view = fake_system(tmp_path, ROOT_ELSEWHERE, removable="0")
    with pytest.raises(UnsafeTargetError, match="not a removable disk.*--force"):
        check_target(sdb[0], image, view=view)
    assert check_target(sdb[0], image, force=True, view=view).notes


@pytest.mark.fast
@pytest.mark.parametrize(
    "mountinfo",
    [
        "27 1 8:17 / / rw,relatime - ext4 /dev/sdb1 rw\n",
        ROOT_ELSEWHERE + "40 27 8:17 / /boot/firmware rw - vfat /dev/sdb1 rw\n",
        "27 1 253:0 / / rw,relatime - ext4 /dev/mapper/root rw\n",
    ],
    ids=["root", "boot", "root-on-device-mapper"],
)
def test_the_system_disk_is_refused_even_with_force(
    tmp_path: Path, image: Path, sdb: tuple[Path, Path], mountinfo: str
) -> None:
    view = fake_system(tmp_path, mountinfo, slaves=True)
    with pytest.raises(UnsafeTargetError, match="this machine runs from sdb"):
        check_target(sdb[0], image, force=True, view=view)


@contextlib.contextmanager
def loop_device(backing: Path) -> Iterator[Path]:
    if shutil.which("losetup") is None and not Path("/usr/sbin/losetup").exists():
        pytest.skip("losetup is missing")
    result = subprocess.run(["losetup", "-f", "--show", str(backing)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"no loop devices here: {result.stderr.strip()}")
    device = Path(result.stdout.strip())
    try:
        yield device
    finally:
        subprocess.run(["losetup", "-d", str(device)], check=False)


def test_flash_onto_a_loop_device_and_refuse_it_while_mounted(image: Path, kid: Path, tmp_path: Path) -> None:
    backing = tmp_path / "loop.img"
    backing.write_bytes(b"\0" * (64 << 20))
    with loop_device(backing) as device:
        with pytest.raises(UnsafeTargetError, match="not a removable disk"):
            check_target(device, image)
        assert main(["flash", "--image", str(image), "--device", str(device), "--identity", str(kid), "--force"]) == 0
        assert backing.read_bytes()[: image.stat().st_size][: 1 << 20] == image.read_bytes()[: 1 << 20]
        assert "identity.toml" in FatVolume(device).listdir()


def test_a_mounted_loop_device_is_refused(image: Path, tmp_path: Path) -> None:
    need("mkfs.ext4")
    backing = tmp_path / "ext4.img"
    backing.write_bytes(b"\0" * (16 << 20))
    subprocess.run(["mkfs.ext4", "-q", str(backing)], check=True)
    with loop_device(backing) as device:
        mnt = tmp_path / "mnt"
        mnt.mkdir()
        mounted = subprocess.run(["mount", str(device), str(mnt)], capture_output=True, text=True)
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount here: {mounted.stderr.strip()}")
        try:
            with pytest.raises(UnsafeTargetError, match=f"mounted at {mnt}"):
                check_target(device, image, force=True)
        finally:
            subprocess.run(["umount", str(mnt)], check=False)
