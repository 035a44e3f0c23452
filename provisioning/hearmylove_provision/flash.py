"""Write an image to an SD card, refusing every disk it must not touch, and read it back.

The refusals come first and do not bend: the disk this machine runs from (/, /boot and
their backing disks through device-mapper or RAID), any disk with a mounted partition or
active swap, a partition instead of a whole disk, a card smaller than the image. A fixed
(non-removable) disk is refused unless --force. A target must be an existing block device:
a path with nothing there is refused (never created), and so is a regular file, unless the
caller asks for a file with `to_file` (`--to-file`), which in turn refuses anything under
/dev. After writing, the page cache is dropped and every byte read back and compared by
sha256.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UnsafeTargetError, VerifyError

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]
CHUNK = 4 << 20
SYSTEM_MOUNTS = ("/", "/boot", "/boot/firmware", "/boot/efi", "/usr", "/var", "/etc")


def _quiet(stage: str, fraction: float) -> None:
    pass


@dataclass(frozen=True)
class SystemView:
    """Where the flasher reads this machine's disks and mounts; tests point it at a fake tree."""

    sys_root: Path = Path("/sys")
    mountinfo: Path = Path("/proc/self/mountinfo")
    swaps: Path = Path("/proc/swaps")

    def disk_of(self, devnum: str) -> str | None:
        """The whole disk ("sdb") holding device MAJ:MIN (a disk or one of its partitions)."""
        link = self.sys_root / "dev" / "block" / devnum
        if not link.exists():
            return None
        real = link.resolve()
        return real.parent.name if (real / "partition").exists() else real.name

    def backing_disks(self, disk: str, seen: frozenset[str] = frozenset()) -> set[str]:
        """The disk itself and, through device-mapper/RAID slaves, the physical disks under it."""
        found = {disk}
        slaves = self.sys_root / "block" / disk / "slaves"
        if slaves.is_dir() and disk not in seen:
            for slave in slaves.iterdir():
                dev = (slave / "dev").read_text().strip() if (slave / "dev").exists() else None
                under = self.disk_of(dev) if dev else None
                if under:
                    found |= self.backing_disks(under, seen | {disk})
        return found

    def _devnum_of_source(self, source: str) -> str | None:
        try:
            st = os.stat(source)
        except OSError:
            return None
        return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}" if stat.S_ISBLK(st.st_mode) else None

    def mounts(self) -> list[tuple[str, str]]:
        """(disk, mount point) for every mount backed by a disk, swap included."""
        found: list[tuple[str, str]] = []
        for line in self.mountinfo.read_text().splitlines():
            fields = line.split()
            if len(fields) < 5 or " - " not in line:
                continue
            source = line.split(" - ", 1)[1].split()[1:2]
            for devnum in (fields[2], *(self._devnum_of_source(s) for s in source if s.startswith("/dev/"))):
                disk = self.disk_of(devnum) if devnum else None
                if disk:
                    found += [(d, fields[4]) for d in self.backing_disks(disk)]
        if self.swaps.exists():
            for line in self.swaps.read_text().splitlines()[1:]:
                devnum = self._devnum_of_source(line.split()[0]) if line.strip() else None
                disk = self.disk_of(devnum) if devnum else None
                if disk:
                    found += [(d, "[swap]") for d in self.backing_disks(disk)]
        return found

    def system_disks(self) -> set[str]:
        return {disk for disk, point in self.mounts() if point in SYSTEM_MOUNTS}

    def removable(self, disk: str) -> bool:
        path = self.sys_root / "block" / disk / "removable"
        return path.exists() and path.read_text().strip() == "1"

    def size(self, disk: str) -> int:
        return int((self.sys_root / "block" / disk / "size").read_text()) * 512


@dataclass(frozen=True)
class Target:
    path: Path
    disk: str | None = None
    """Kernel name of the block device; None for a file asked for with `to_file`."""
    notes: list[str] = field(default_factory=list)


def check_target(
    target: Path, image: Path, force: bool = False, view: SystemView | None = None, to_file: bool = False
) -> Target:
    """Decide whether `target` may be overwritten with `image`; raise UnsafeTargetError if not.

    `to_file` is the only way to write a regular file (an image copy for a VM); without it a
    missing path or a file is refused, so a mistyped /dev/sdX never becomes a file that
    "verifies"."""
    view = view or SystemView()
    target, size = Path(target), Path(image).stat().st_size
    if to_file:
        return _check_file(target, image)
    if not target.exists():
        raise UnsafeTargetError(
            f"{str(target)!r} does not exist: no card is there; plug the card in and find its name with "
            "lsblk (e.g. /dev/sdb, /dev/mmcblk0). Nothing was written"
        )
    st = target.stat()
    if stat.S_ISREG(st.st_mode):
        raise UnsafeTargetError(
            f"{str(target)!r} is a regular file, not a card; to write the image into a file, add --to-file"
        )
    if not stat.S_ISBLK(st.st_mode):
        raise UnsafeTargetError(f"{str(target)!r} is not a block device; a card is /dev/sdX or /dev/mmcblkN")
    return _check_disk(target, f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}", size, force, view)


def _check_file(target: Path, image: Path) -> Target:
    """A regular file, new or existing, outside /dev (where a missing card's name would be)."""
    if Path("/dev") in (target.absolute(), *target.absolute().parents):
        raise UnsafeTargetError(f"refusing {str(target)!r} with --to-file: files are never written under /dev")
    if not target.parent.is_dir():
        raise UnsafeTargetError(f"{str(target)!r}: the folder {str(target.parent)!r} does not exist")
    if target.exists() and not target.is_file():
        raise UnsafeTargetError(f"{str(target)!r} is not a regular file; --to-file writes only files")
    if target.exists() and target.samefile(image):
        raise UnsafeTargetError(f"{str(target)!r} is the image itself")
    return Target(target)


def _check_disk(target: Path, devnum: str, size: int, force: bool, view: SystemView) -> Target:
    disk = view.disk_of(devnum)
    if disk is None:
        raise UnsafeTargetError(f"{str(target)!r} ({devnum}) is not in {view.sys_root}/dev/block; is it unplugged?")
    if (view.sys_root / "dev" / "block" / devnum / "partition").exists():
        raise UnsafeTargetError(f"{str(target)!r} is a partition of {disk}; give the whole card: /dev/{disk}")
    if disk in view.system_disks():
        raise UnsafeTargetError(f"refusing {str(target)!r}: this machine runs from {disk} (/ or /boot is on it)")
    if mounted := sorted({point for d, point in view.mounts() if d == disk}):
        raise UnsafeTargetError(
            f"refusing {str(target)!r}: it is in use, mounted at {', '.join(mounted)}; unmount it first "
            f"(udisksctl unmount -b /dev/{disk}1, or umount)"
        )
    notes = []
    if not view.removable(disk):
        if not force:
            raise UnsafeTargetError(
                f"refusing {str(target)!r}: {disk} is not a removable disk; if it really is the SD card "
                "(some USB readers report fixed disks), add --force"
            )
        notes.append(f"{disk} is not removable; writing anyway because of --force")
    if view.size(disk) < size:
        raise UnsafeTargetError(f"{disk} holds {view.size(disk) >> 20} MiB; the image needs {size >> 20} MiB")
    return Target(target, disk, notes)


def write_image(image: Path, target: Path, progress: Progress = _quiet, create: bool = False) -> str:
    """Copy the image onto the target and flush it; the sha256 of what was written. Only with
    `create` (a checked `to_file` target) may a missing path become a new file."""
    size, done, digest = Path(image).stat().st_size, 0, hashlib.sha256()
    is_block = target.exists() and stat.S_ISBLK(target.stat().st_mode)
    # O_EXCL on a block device fails if the kernel knows it is mounted: one more guard.
    flags = os.O_WRONLY | (os.O_EXCL if is_block else os.O_TRUNC) | (os.O_CREAT if create and not is_block else 0)
    with open(image, "rb") as src:
        fd = os.open(target, flags, 0o644)
        try:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
                done += len(chunk)
                progress("write", done / size)
            progress("sync", 0.0)
            os.fsync(fd)
            progress("sync", 1.0)
        finally:
            os.close(fd)
    return digest.hexdigest()


def verify(target: Path, size: int, expected: str, progress: Progress = _quiet) -> None:
    """Read `size` bytes back from the target (not from the page cache) and compare sha256."""
    digest, done = hashlib.sha256(), 0
    fd = os.open(target, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        while done < size:
            chunk = os.read(fd, min(CHUNK, size - done))
            if not chunk:
                break
            digest.update(chunk)
            done += len(chunk)
            progress("verify", done / size)
    finally:
        os.close(fd)
    if done < size:
        raise VerifyError(f"{target} returned only {done} of {size} bytes; the card may be smaller or failing")
    if digest.hexdigest() != expected:
        raise VerifyError(
            f"{target} does not read back what was written (sha256 {digest.hexdigest()[:16]} != {expected[:16]}); "
            "the card or reader is faulty or a fake-capacity card: try another card"
        )


def flash(image: Path, target: Target, progress: Progress = _quiet) -> str:
    """Write and verify; the sha256 of the image. The caller has validated the identity first."""
    for note in target.notes:
        log.warning("%s", note)
    digest = write_image(image, target.path, progress, create=target.disk is None)
    verify(target.path, Path(image).stat().st_size, digest, progress)
    return digest
