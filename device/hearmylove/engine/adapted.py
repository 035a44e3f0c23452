"""A parent's own vocoder: the shipped student head with the studio's low-rank delta merged in.

Why a delta: the studio fine-tunes the student head on a parent's recordings (voicelab
`adapt`), but a pack must stay small enough for MQTT. It carries, per adapted matrix, two
thin factors (`NAME.lora_a` [r, in], `NAME.lora_b` [out, r]) and the few small vectors it
retrained whole (`NAME`). The speaker merges them once, at install, into the base head's
weights (`W + B @ A`), keeps the merged head beside the pack, and at load hands those tensors
to onnxruntime in place of the student graph's own (`SessionOptions.add_initializer`): no
graph is rebuilt and nothing imports `onnx`. Numpy only.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VoicePackError

DELTA_FILE = "vocoder.npz"
"""The pack's payload: low-rank factors and whole vectors, float16, keyed by the head's tensor names."""
MERGED_FILE = "vocoder-merged.npz"
"""Written at install beside the pack: the adapted head's tensors, float16."""
MAX_RANK = 64
MAX_DELTA_BYTES = 10 << 20
"""A pack travels over MQTT: the delta of a whole head at rank 16 is about 1 MB."""
TRANSPOSED = ".T"
"""An ONNX initializer name ending so holds the torch weight transposed (a MatMul's [in, out])."""


def _arrays(path: Path, what: str) -> dict[str, np.ndarray]:
    size = path.stat().st_size
    if size > MAX_DELTA_BYTES and what == "vocoder delta":
        raise VoicePackError(f"{path.name} is {size:,} bytes; a vocoder delta is at most {MAX_DELTA_BYTES:,}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise VoicePackError(f"{path.name} is not a NumPy .npz {what} ({exc}); rebuild the pack") from exc
    for name, value in arrays.items():
        if value.dtype not in (np.float16, np.float32) or not np.isfinite(value).all():
            raise VoicePackError(f"{path.name}: {name} must hold finite float16/float32 values; rebuild the pack")
    return arrays


def read_delta(path: Path) -> dict[str, np.ndarray]:
    """A pack's vocoder delta, checked for form (not yet against a base)."""
    delta = _arrays(path, "vocoder delta")
    if not delta:
        raise VoicePackError(f"{path.name} is empty; rebuild the pack")
    return delta


def merge(base: Mapping[str, np.ndarray], delta: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The tensors the delta changes, merged: `W + B @ A` for low-rank pairs, whole for the rest.

    Raises VoicePackError naming the tensor when the delta does not fit this base head."""
    merged: dict[str, np.ndarray] = {}
    for key, value in sorted(delta.items()):
        if key.endswith(".lora_b"):
            if key.removesuffix(".lora_b") + ".lora_a" not in delta:
                raise VoicePackError(f"vocoder delta has {key} without its .lora_a; rebuild the pack")
            continue
        name = key.removesuffix(".lora_a")
        if name not in base:
            raise VoicePackError(f"vocoder delta names {name!r}, which the speaker's student head does not have")
        weight = np.asarray(base[name], np.float32)
        if key.endswith(".lora_a"):
            b = delta.get(name + ".lora_b")
            a = np.asarray(value, np.float32)
            if b is None or a.ndim != 2 or b.ndim != 2 or b.shape[1] != a.shape[0] or a.shape[0] > MAX_RANK:
                raise VoicePackError(f"vocoder delta: {name}'s low-rank factors do not pair up (rank <= {MAX_RANK})")
            if b.shape[0] * a.shape[1] != weight.size or b.shape[0] != weight.shape[0]:
                made = f"{b.shape[0]}x{a.shape[1]}"
                raise VoicePackError(f"vocoder delta: {name} is {weight.shape} here, the factors make {made}")
            merged[name] = weight + (np.asarray(b, np.float32) @ a).reshape(weight.shape)
        else:
            if value.shape != weight.shape:
                raise VoicePackError(f"vocoder delta: {name} is {weight.shape} here, {value.shape} in the pack")
            merged[name] = np.asarray(value, np.float32)
    return merged


def write_merged(path: Path, merged: Mapping[str, np.ndarray]) -> str:
    """Save the merged head (float16) and return its sha256 (the voice's digest covers it)."""
    with path.open("wb") as out:
        arrays: dict[str, Any] = {name: value.astype(np.float16) for name, value in merged.items()}
        np.savez(out, **arrays)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def initializers(merged_file: Path, tensors: Mapping[str, str]) -> dict[str, np.ndarray]:
    """The student graph's initializer name -> float32 value for every merged tensor.

    `tensors` maps the head's torch names to the graph's (from `vocoders.json`, written by
    the build); a name ending in `.T` holds the matrix transposed."""
    out: dict[str, np.ndarray] = {}
    for name, value in _arrays(merged_file, "merged vocoder").items():
        target = tensors.get(name)
        if target is None:
            raise VoicePackError(f"{merged_file}: {name!r} is not a tensor of the built student vocoder")
        value = value.astype(np.float32)
        out[target] = np.ascontiguousarray(value.T if target.endswith(TRANSPOSED) else value)
    return out
