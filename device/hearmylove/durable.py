"""Writes that survive a power cut: flush a file or a folder's entries to the disk.

A speaker is unplugged at any moment. Every "write to a temporary name, then rename"
in the project (renders, base models, voice packs) flushes the file before the rename
and the folder after it, through this one helper.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync(path: Path) -> None:
    """Flush a file's data, or a folder's list of entries (after a rename into it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
