"""Render cache: stories rendered ahead to compressed files, so pressing play is instant.

A file is named by a key over everything that changes how a story sounds (text,
language, voice vector, speed, engine version). It is written under a temporary name
in the same folder, flushed to disk, then renamed into place: after a power cut there
is either the whole file or none, and leftovers are swept on start-up.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf

from ..durable import fsync
from ..errors import CacheError
from .engine import ENGINE_VERSION, SAMPLE_RATE
from .voices import Voice

log = logging.getLogger(__name__)

Codec = Literal["opus", "flac"]
_FORMATS: dict[str, tuple[str, str, str]] = {  # codec -> (suffix, container, subtype)
    "opus": (".opus", "OGG", "OPUS"),
    "flac": (".flac", "FLAC", "PCM_16"),
}
_PARTIAL = ".partial"


def render_key(text: str, voice: Voice, lang: str, speed: float = 1.0, vocoder: str = "vocoder.onnx") -> str:
    """Everything that changes the sound: a story told by another vocoder is rendered again."""
    digest = hashlib.sha256()
    for part in (ENGINE_VERSION, vocoder, lang, f"{speed:.3f}", voice.digest, text):
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:32]


class RenderCache:
    def __init__(self, folder: Path, codec: Codec = "opus") -> None:
        self.folder = Path(folder)
        self.codec = codec
        self.folder.mkdir(parents=True, exist_ok=True)
        self.sweep()

    def path(self, key: str) -> Path:
        return self.folder / (key + _FORMATS[self.codec][0])

    def get(self, key: str) -> Path | None:
        """The finished render for `key`, or None. Partial files are never returned."""
        path = self.path(key)
        return path if path.is_file() else None

    def sweep(self) -> int:
        """Remove renders a power cut or crash left half-written."""
        removed = 0
        for leftover in self.folder.glob(f"*{_PARTIAL}*"):
            leftover.unlink(missing_ok=True)
            removed += 1
        if removed:
            log.info("removed %d unfinished renders from %s", removed, self.folder)
        return removed

    def write(self, key: str, chunks: Iterable[np.ndarray]) -> Generator[np.ndarray, None, None]:
        """Pass chunks through while writing them; the file appears only once all are written.

        A reader that stops early (the story was stopped) leaves no file behind.
        """
        suffix, container, subtype = _FORMATS[self.codec]
        final = self.path(key)
        partial = self.folder / f"{key}{_PARTIAL}-{uuid.uuid4().hex[:8]}{suffix}"
        complete = False
        try:
            with sf.SoundFile(partial, "w", SAMPLE_RATE, 1, subtype=subtype, format=container) as out:
                for chunk in chunks:
                    out.write(np.clip(chunk, -1.0, 1.0))
                    yield chunk
            complete = True
        except sf.LibsndfileError as exc:
            raise CacheError(f"cannot write render {partial}: {exc}") from exc
        finally:
            if complete:
                fsync(partial)
                os.replace(partial, final)
                fsync(self.folder)
            else:
                partial.unlink(missing_ok=True)

    def render(self, key: str, chunks: Iterable[np.ndarray]) -> Path:
        for _ in self.write(key, chunks):
            pass
        return self.path(key)

    def read(self, key: str, block_seconds: float = 1.0) -> Iterator[np.ndarray]:
        path = self.get(key)
        if path is None:
            raise CacheError(f"no finished render for key {key!r} in {self.folder}")
        try:
            with sf.SoundFile(path) as f:
                for block in f.blocks(blocksize=int(block_seconds * f.samplerate), dtype="float32"):
                    yield block.reshape(-1)
        except sf.LibsndfileError as exc:
            raise CacheError(f"render {path} is unreadable ({exc}); delete it to render again") from exc
