"""Build and sign voice packs in the studio (the speaker's side is `hearmylove.voicepack`).

The signing key never leaves the studio: `generate_key` writes it owner-only next to
its public half, which goes into each speaker's `trusted_keys`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from hearmylove.basemodel import read_manifest
from hearmylove.engine import adapted
from hearmylove.errors import VoicePackError
from hearmylove.voicepack import (
    MANIFEST,
    SIGNATURE,
    STYLE,
    AdaptedVocoder,
    Consent,
    PackManifest,
    _check_style,
    verify_pack,
)


def public_key_path(key_path: Path) -> Path:
    return Path(key_path).with_suffix(".pub")


def generate_key(path: Path) -> Path:
    """Write a new ed25519 signing key (PEM, mode 0600) and its public key; return the .pub path."""
    path = Path(path)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise VoicePackError(
            f"{path} already exists; refusing to overwrite a signing key, choose another --out"
        ) from exc
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub = public_key_path(path)
    pub.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return pub


def public_key_base64(key: Ed25519PrivateKey) -> str:
    """The one-line form of the public key, for a speaker's config."""
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise VoicePackError(f"cannot read signing key {path} ({exc}); make one with: voicelab keygen") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise VoicePackError(f"{path} is not an ed25519 key; make one with: voicelab keygen")
    return key


def _write_tar(out: Path, files: dict[str, bytes], mtime: float) -> None:
    """Write a flat tar under a temporary name, then rename, so a half-written pack never exists."""
    partial = out.with_name(out.name + ".partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, int(mtime)
            tar.addfile(info, io.BytesIO(data))
    os.replace(partial, out)


def build_pack(
    style: np.ndarray,
    voice_id: str,
    display_name: str,
    languages: list[str],
    consent: Consent,
    quality: dict[str, float],
    base_model_dir: Path,
    signing_key_path: Path,
    out: Path,
    vocoder: tuple[AdaptedVocoder, dict[str, np.ndarray]] | None = None,
) -> PackManifest:
    """Write a signed pack to `out` (a .tar, or a folder for any other name) and check it reads back.
    `vocoder`: the parent's adapted vocoder, its description and its delta tensors (`adapt.lora`)."""
    base = read_manifest(base_model_dir)
    key = load_signing_key(signing_key_path)
    with tempfile.TemporaryDirectory() as tmp:
        style_path = Path(tmp) / STYLE
        np.save(style_path, np.asarray(style, dtype=np.float32))
        _check_style(style_path)
        style_bytes = style_path.read_bytes()
        payload = {STYLE: style_bytes}
        if vocoder is not None:
            delta_path = Path(tmp) / adapted.DELTA_FILE
            with delta_path.open("wb") as f:
                arrays: dict[str, Any] = {name: value.astype(np.float16) for name, value in vocoder[1].items()}
                np.savez(f, **arrays)
            adapted.read_delta(delta_path)
            payload[adapted.DELTA_FILE] = delta_path.read_bytes()
    manifest = PackManifest(
        voice_id=voice_id,
        display_name=display_name,
        languages=languages,  # type: ignore[arg-type]
        base_model=str(base["base_model"]),
        base_model_sha256=str(base["base_model_sha256"]),
        files={name: hashlib.sha256(blob).hexdigest() for name, blob in payload.items()},
        quality=quality,
        consent=consent,
        created_at=datetime.now(UTC),
        vocoder=vocoder[0] if vocoder is not None else None,
    )
    data = manifest.model_dump_json(indent=2, exclude_none=True).encode()
    files = {MANIFEST: data, SIGNATURE: key.sign(data), **payload}
    out = Path(out)
    if out.exists():
        raise VoicePackError(f"{out} already exists; remove it or choose another --out")
    if out.suffix == ".tar":
        _write_tar(out, files, manifest.created_at.timestamp())
    else:
        out.mkdir(parents=True)
        for name, blob in files.items():
            (out / name).write_bytes(blob)
    return verify_pack(out, [key.public_key()], manifest.base_model_sha256)
