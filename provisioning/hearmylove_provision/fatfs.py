"""The FAT firmware partition of an image file or a card, reached with mtools: no mounts, no root.

`mcopy -i IMAGE@@OFFSET` addresses a FAT file system at a byte offset inside a file or a
block device, so the identity can be written onto a freshly flashed card (or an image) on
any machine, with no loop device and no privileges beyond opening the file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ToolError

FOLDER = "hearmylove"
"""The identity bundle's folder at the root of the FAT partition (/boot/firmware/hearmylove on the Pi)."""
FAT_TYPES = {"b", "c", "e", "ef", "0b", "0c", "0e"}
_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "MTOOLS_NO_VFAT": "0"}


@dataclass(frozen=True)
class Partition:
    number: int
    start: int
    """Byte offset in the image or disk."""
    size: int
    """Bytes."""
    type: str


def tool(name: str, package: str) -> str:
    """The path of a host tool, or a ToolError that says which package has it."""
    found = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if Path(p).exists()), None)
    if found is None:
        raise ToolError(f"{name} is missing; install it with: apt-get install {package}")
    return found


def run(
    args: list[str], what: str, input: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run a tool; a failure becomes a ToolError carrying its stderr."""
    result = subprocess.run(args, input=input, capture_output=True, env={**_ENV, **(env or {})}, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).decode(errors="replace").strip()
        raise ToolError(f"{what} failed ({Path(args[0]).name} exit {result.returncode}): {detail}")
    return result


def partitions(image: Path) -> list[Partition]:
    """The partition table of an image file or disk (MBR or GPT), read with sfdisk --json."""
    out = run([tool("sfdisk", "fdisk"), "--json", str(image)], f"reading the partition table of {image}").stdout
    table = json.loads(out)["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    found = []
    for i, part in enumerate(table.get("partitions", []), start=1):
        number = int("".join(ch for ch in part["node"][-3:] if ch.isdigit()) or i)
        found.append(Partition(number, part["start"] * sector, part["size"] * sector, str(part["type"]).lower()))
    return found


def firmware_partition(image: Path) -> Partition:
    """The first FAT partition: the Raspberry Pi firmware partition (/boot/firmware)."""
    for part in partitions(image):
        if part.type in FAT_TYPES or part.type.startswith("ebd0a0a2") or part.type.startswith("c12a7328"):
            return part
    raise ToolError(f"{image} has no FAT partition; is it a Hear My Love image? Flash one with: provision flash")


class FatVolume:
    """The FAT file system of one partition inside an image file or a disk."""

    def __init__(self, image: Path, offset: int | None = None) -> None:
        self.image = Path(image)
        self.offset = firmware_partition(self.image).start if offset is None else offset
        self._target = f"{self.image}@@{self.offset}"

    def _m(self, name: str, *args: str, what: str) -> subprocess.CompletedProcess[bytes]:
        return run([tool(name, "mtools"), "-i", self._target, *args], what)

    def listdir(self, folder: str = FOLDER) -> list[str]:
        """Names in a folder ([] when it does not exist)."""
        result = subprocess.run(
            [tool("mdir", "mtools"), "-i", self._target, "-b", f"::/{folder}"], capture_output=True, env=_ENV
        )
        if result.returncode != 0:
            return []
        return sorted(line.rsplit("/", 1)[-1] for line in result.stdout.decode().split("\n") if line.strip())

    def read(self, name: str, folder: str = FOLDER) -> bytes:
        return self._m("mtype", "-t", f"::/{folder}/{name}", what=f"reading {folder}/{name}").stdout

    def remove_folder(self, folder: str = FOLDER) -> None:
        if self._exists(folder):
            self._m("mdeltree", f"::/{folder}", what=f"removing {folder} from the FAT partition")

    def _exists(self, folder: str) -> bool:
        result = subprocess.run(
            [tool("mdir", "mtools"), "-i", self._target, f"::/{folder}"], capture_output=True, env=_ENV
        )
        return result.returncode == 0

    def write_folder(self, files: dict[str, bytes], folder: str = FOLDER) -> None:
        """Replace `folder` with exactly these files."""
        self.remove_folder(folder)
        self._m("mmd", f"::/{folder}", what=f"creating {folder} on the FAT partition")
        with tempfile.TemporaryDirectory(prefix="hml-fat-") as tmp:
            for name, data in files.items():
                local = Path(tmp) / name
                fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                self._m("mcopy", "-o", str(local), f"::/{folder}/{name}", what=f"writing {folder}/{name}")
