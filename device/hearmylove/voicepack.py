"""Voice packs: a family's voice as the studio ships it to a speaker.

A pack is a folder or `.tar` holding `manifest.json`, its raw ed25519 signature
`manifest.sig`, and the payload (`style.npy`, and for a parent's adapted vocoder
`vocoder.npz`, a low-rank delta on the student head that the speaker merges at install).
The manifest lists the sha256 of every payload file, so the signature covers them all.
The speaker accepts only packs signed by a key in its config, made for the base model it
runs. Installing unpacks into a temp folder beside the voices, verifies, fsyncs and
renames; the previous pack stays as `<id>.previous` until `commit` says the new one has played.

Nothing from a pack touches the disk before its manifest's signature checks out: the
manifest and signature are read from the tar first (at most `MAX_MEMBERS` members are
looked at, all plain files at the top level), then only the files the signed manifest
lists are written, by this module, with mode 0644, whatever the tar says.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import io
import logging
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO, Literal

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .basemodel import BASE_MODEL_NAME, _sha256
from .durable import fsync
from .engine import adapted
from .engine.vocoders import StudentBuild
from .engine.voices import STYLE_DIM, Voice
from .errors import VoiceError, VoicePackError
from .protocol import VOICE_ID_PATTERN

log = logging.getLogger(__name__)

FORMAT_VERSION: Literal[1] = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
STYLE = "style.npy"
MAX_PACK_BYTES = 256 << 20
MAX_MEMBERS = 64
"""A pack holds a manifest, a signature and a few payload files; a tar with more is refused
after reading this many headers, not all of them."""
MAX_MANIFEST_BYTES = 1 << 20
FILE_MODE = 0o644
"""Every unpacked file gets this mode: no setuid or world-writable bits survive from a tar."""
_INCOMING = ".incoming-"
_UPLOAD = ".upload-"
_PREVIOUS = ".previous"


class Consent(BaseModel):
    """Who gave their voice, when, and for which speaker."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    recorded_by: str = Field(min_length=1)
    recorded_at: datetime
    device_id: str = Field(min_length=1)
    """The speaker this voice was recorded for."""
    statement: str = Field(min_length=1)
    """The consent text the speaker agreed to, word for word."""


class AdaptedVocoder(BaseModel):
    """The parent's own vocoder: `vocoder.npz` is a delta on the student head with this sha256."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    base_head_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """The shipped head it was fine-tuned from (models/weights/student-head.json)."""
    rank: int = Field(ge=1, le=adapted.MAX_RANK)
    steps: int = Field(ge=0)
    """Fine-tuning steps on the parent's recordings."""
    speech_seconds: float = Field(ge=0)
    """Seconds of the parent's speech it was trained on."""


class PackManifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    format_version: Literal[1] = FORMAT_VERSION
    voice_id: str = Field(pattern=VOICE_ID_PATTERN)
    """Also the folder name under the voices directory."""
    display_name: str = Field(min_length=1, max_length=80)
    languages: list[Literal["en", "zh"]] = Field(min_length=1)
    sample_rate: Literal[24000] = 24000
    base_model: str = BASE_MODEL_NAME
    base_model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """The style vector only fits the exact model it was cloned against."""
    files: dict[str, str]
    """Payload file name -> sha256; manifest and signature are not listed."""
    quality: dict[str, float] = {}
    """Figures from the studio's quality report (e.g. speaker similarity, WER)."""
    consent: Consent
    created_at: datetime
    vocoder: AdaptedVocoder | None = None
    """Set when the pack carries the parent's adapted vocoder (`vocoder.npz`)."""

    @model_validator(mode="after")
    def _delta_listed(self) -> PackManifest:
        if (self.vocoder is not None) != (adapted.DELTA_FILE in self.files):
            raise ValueError(f"{adapted.DELTA_FILE!r} must be listed exactly when the manifest describes a vocoder")
        return self

    @field_validator("files")
    @classmethod
    def _plain_names(cls, files: dict[str, str]) -> dict[str, str]:
        for name in files:
            if name in (MANIFEST, SIGNATURE) or PurePosixPath(name).name != name or name.startswith("."):
                raise ValueError(f"file name {name!r} must be a plain name inside the pack")
        if STYLE not in files:
            raise ValueError(f"files must list {STYLE!r}")
        return files


def load_public_key(text: str) -> Ed25519PublicKey:
    """A trusted studio key from config: PEM, or the raw 32 bytes in base64."""
    text = text.strip()
    try:
        if "BEGIN" in text:
            key = load_pem_public_key(text.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError("not an ed25519 key")
            return key
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error) as exc:
        raise VoicePackError(
            f"{text[:40]!r} is not an ed25519 public key ({exc}); paste the studio's .pub file or its base64 line"
        ) from exc


def _check_signature(data: bytes, signature: bytes | None, trusted_keys: list[Ed25519PublicKey]) -> None:
    if signature is None:
        raise VoicePackError(f"the pack is unsigned (no {SIGNATURE}); sign it in the studio with: voicelab pack --key")
    if not trusted_keys:
        raise VoicePackError("no trusted studio keys are configured; add the studio's public key to trusted_keys")
    for key in trusted_keys:
        try:
            key.verify(signature, data)
            return
        except InvalidSignature:
            continue
    raise VoicePackError(
        f"{SIGNATURE} does not match any of the {len(trusted_keys)} trusted key(s): the manifest was edited "
        "or signed by another studio; download the pack again or add that studio's key to trusted_keys"
    )


def _signed_manifest(data: bytes, signature: bytes | None, trusted_keys: list[Ed25519PublicKey]) -> PackManifest:
    """The manifest, once its signature matches a trusted key (checked before it is parsed)."""
    _check_signature(data, signature, trusted_keys)
    try:
        return PackManifest.model_validate_json(data)
    except ValidationError as exc:
        raise VoicePackError(f"{MANIFEST} is signed but not a valid v{FORMAT_VERSION} manifest: {exc}") from exc


def _check_names(present: set[str], manifest: PackManifest) -> None:
    present = present - {MANIFEST, SIGNATURE}
    if extra := sorted(present - set(manifest.files)):
        raise VoicePackError(f"extra file(s) {extra} not listed in the manifest; remove them or rebuild the pack")
    if missing := sorted(set(manifest.files) - present):
        raise VoicePackError(f"file(s) {missing} listed in the manifest are missing; download the pack again")


def _check_files(folder: Path, manifest: PackManifest) -> None:
    _check_names({p.name for p in folder.iterdir()}, manifest)
    for name, expected in sorted(manifest.files.items()):
        path = folder / name
        if path.is_symlink() or not path.is_file():
            raise VoicePackError(f"{name!r} is not a plain file; a voice pack holds only plain files")
        if _sha256(path) != expected:
            raise VoicePackError(f"tampered file {name!r}: its sha256 does not match the manifest; download again")


def _check_style(path: Path) -> np.ndarray:
    try:
        style = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise VoicePackError(f"{path.name} is not a NumPy array ({exc}); rebuild the pack") from exc
    shape_ok = style.ndim in (1, 2) and style.size > 0 and style.shape[-1] == STYLE_DIM
    if style.dtype != np.float32 or not shape_ok:
        raise VoicePackError(
            f"{path.name} has bad shape {style.shape} ({style.dtype}); it must be float32 ({STYLE_DIM},) or "
            f"(N, {STYLE_DIM}); rebuild the pack"
        )
    if not np.isfinite(style).all():
        raise VoicePackError(f"{path.name} has values that are not finite (NaN or infinity); rebuild the pack")
    return style


def check_consent(manifest: PackManifest, device_id: str) -> None:
    """A voice is used only on the speaker its owner agreed to: the signed consent names it."""
    consent = manifest.consent
    if consent.device_id != device_id:
        raise VoicePackError(
            f"voice pack {manifest.voice_id!r} was made for speaker {consent.device_id!r} (consent given by "
            f"{consent.recorded_by} on {consent.recorded_at:%Y-%m-%d}), not for this speaker {device_id!r}; "
            f"make the pack again in the studio with --device-id {device_id}"
        )


def _verify_folder(
    folder: Path, trusted_keys: list[Ed25519PublicKey], base_model_sha256: str, device_id: str | None = None
) -> PackManifest:
    if not (folder / MANIFEST).is_file():
        raise VoicePackError(f"not a voice pack: no {MANIFEST} in it")
    sig_path = folder / SIGNATURE
    signature = sig_path.read_bytes() if sig_path.is_file() else None
    manifest = _signed_manifest((folder / MANIFEST).read_bytes(), signature, trusted_keys)
    if device_id is not None:
        check_consent(manifest, device_id)
    _check_files(folder, manifest)
    _check_base(manifest, base_model_sha256)
    _check_style(folder / STYLE)
    if manifest.vocoder is not None:
        adapted.read_delta(folder / adapted.DELTA_FILE)
    return manifest


def merge_vocoder(folder: Path, manifest: PackManifest, student: StudentBuild | None) -> None:
    """Merge a verified pack's vocoder delta into the speaker's student head, once, beside it."""
    if manifest.vocoder is None:
        return
    if student is None:
        raise VoicePackError(
            f"voice pack {manifest.voice_id!r} carries {manifest.consent.recorded_by}'s own vocoder, but this "
            "speaker has no student vocoder built; build it: voicelab build --vocoder student"
        )
    if student.head_sha256 != manifest.vocoder.base_head_sha256:
        raise VoicePackError(
            f"voice pack {manifest.voice_id!r} adapts the student head {manifest.vocoder.base_head_sha256[:16]}, "
            f"this speaker runs {student.head_sha256[:16]}; clone the voice again against this speaker's head"
        )
    with np.load(student.weights, allow_pickle=False) as npz:
        base = {name: npz[name] for name in npz.files}
    merged = adapted.merge(base, adapted.read_delta(folder / adapted.DELTA_FILE))
    digest = adapted.write_merged(folder / adapted.MERGED_FILE, merged)
    (folder / (adapted.MERGED_FILE + ".sha256")).write_text(digest + "\n")


def _check_base(manifest: PackManifest, base_model_sha256: str) -> None:
    if manifest.base_model_sha256 != base_model_sha256:
        raise VoicePackError(
            f"wrong base model: the speaker runs {base_model_sha256[:16]}, the pack was made for "
            f"{manifest.base_model} {manifest.base_model_sha256[:16]}; rebuild the pack against this base model"
        )


def _short(name: str) -> str:
    return repr(name if len(name) <= 80 else name[:60] + "..." + name[-10:])


def _check_member(member: tarfile.TarInfo) -> str:
    """The member's plain file name; refuse paths that escape, nest, link or name devices."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or member.name.startswith("\\"):
        raise VoicePackError(f"tar member {_short(member.name)} has an absolute path; refusing to unpack")
    if ".." in path.parts:
        raise VoicePackError(f"tar member {_short(member.name)} would escape the pack folder; refusing to unpack")
    if not (member.isfile() or member.isdir()):
        raise VoicePackError(
            f"tar member {_short(member.name)} is a link or device; a voice pack holds only plain files"
        )
    parts = [part for part in path.parts if part != "."]
    if member.isdir() and parts:
        raise VoicePackError(f"tar member {_short(member.name)} is a folder; a voice pack holds only plain files")
    if len(parts) > 1:  # counted, never walked: a 2,000-deep path costs nothing to refuse
        raise VoicePackError(
            f"tar member {_short(member.name)} is inside {len(parts) - 1} folder(s); a voice pack holds only "
            "plain files at its top level"
        )
    return parts[0] if parts else ""


def _tar_members(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    """Plain files by name, reading at most MAX_MEMBERS + 1 headers (never the whole tar)."""
    files: dict[str, tarfile.TarInfo] = {}
    for count, member in enumerate(iter(tar.next, None), start=1):
        if count > MAX_MEMBERS:
            raise VoicePackError(f"the pack has more than {MAX_MEMBERS} members; a voice pack has a few; refusing")
        name = _check_member(member)
        if not name:
            continue  # "." itself
        if name in files:
            raise VoicePackError(f"tar member {name!r} appears twice; refusing an ambiguous pack")
        files[name] = member
    if sum(m.size for m in files.values()) > MAX_PACK_BYTES:
        raise VoicePackError(f"the pack unpacks to more than {MAX_PACK_BYTES >> 20} MiB; refusing")
    return files


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo | None, limit: int) -> bytes | None:
    if member is None:
        return None
    if member.size > limit:
        raise VoicePackError(f"{member.name} is {member.size:,} bytes; at most {limit:,} are expected")
    stream = tar.extractfile(member)
    return None if stream is None else stream.read()


def _write_file(source: IO[bytes], dest: Path) -> None:
    """A new plain file with FILE_MODE (O_EXCL: nothing there is followed or overwritten)."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)
    os.chmod(dest, FILE_MODE)  # the umask may have taken bits away; none can have been added


def _unpack_tar(tar: tarfile.TarFile, dest: Path, trusted_keys: list[Ed25519PublicKey]) -> PackManifest:
    files = _tar_members(tar)
    data = _read_member(tar, files.get(MANIFEST), MAX_MANIFEST_BYTES)
    if data is None:
        raise VoicePackError(f"not a voice pack: no {MANIFEST} in it")
    manifest = _signed_manifest(data, _read_member(tar, files.get(SIGNATURE), 1024), trusted_keys)
    _check_names(set(files), manifest)
    for name in (MANIFEST, SIGNATURE, *sorted(manifest.files)):
        stream = tar.extractfile(files[name])
        assert stream is not None  # a plain file, checked above
        _write_file(stream, dest / name)
    return manifest


def _unpack_folder(pack: Path, dest: Path, trusted_keys: list[Ed25519PublicKey]) -> PackManifest:
    entries = {e.name: e for _, e in zip(range(MAX_MEMBERS + 1), pack.iterdir(), strict=False)}
    if len(entries) > MAX_MEMBERS:
        raise VoicePackError(f"the pack folder has more than {MAX_MEMBERS} entries; refusing")
    for entry in entries.values():
        if entry.is_symlink() or not entry.is_file():
            raise VoicePackError(f"{entry.name!r} is not a plain file; a voice pack holds only plain files")
    if MANIFEST not in entries:
        raise VoicePackError(f"not a voice pack: no {MANIFEST} in it")
    signature = entries[SIGNATURE].read_bytes() if SIGNATURE in entries else None
    manifest = _signed_manifest(entries[MANIFEST].read_bytes(), signature, trusted_keys)
    _check_names(set(entries), manifest)
    for name in (MANIFEST, SIGNATURE, *sorted(manifest.files)):
        with entries[name].open("rb") as source:
            _write_file(source, dest / name)
    return manifest


def unpack(pack: Path | bytes, dest: Path, trusted_keys: list[Ed25519PublicKey]) -> PackManifest:
    """Write a pack's files into the empty folder `dest`, only once its manifest's signature
    matches a trusted key and the pack's names match the manifest: nothing from an unsigned,
    foreign, oversized or odd pack is written. Hashes are checked afterwards (`_verify_folder`)."""
    if isinstance(pack, Path) and pack.is_dir():
        return _unpack_folder(pack, dest, trusted_keys)
    if isinstance(pack, Path) and not pack.is_file():
        raise VoicePackError(f"not a voice pack: {str(pack)!r} is neither a pack folder nor a .tar")
    try:
        source = tarfile.open(pack) if isinstance(pack, Path) else tarfile.open(fileobj=io.BytesIO(pack))
        with source as tar:
            return _unpack_tar(tar, dest, trusted_keys)
    except tarfile.TarError as exc:
        name = pack.name if isinstance(pack, Path) else "the pack"
        reason = str(exc).splitlines()[0].rstrip(":")
        raise VoicePackError(f"not a voice pack: {name} is not a readable tar ({reason}); download it again") from exc


@contextmanager
def _verified(
    path: Path, trusted_keys: list[Ed25519PublicKey], base_model_sha256: str, device_id: str | None
) -> Iterator[tuple[Path, PackManifest]]:
    """The pack's folder (a tar unpacked into a temporary one) and its verified manifest."""
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="voicepack-") as tmp:
        folder = path
        if not path.is_dir():
            unpack(path, Path(tmp), trusted_keys)
            folder = Path(tmp)
        yield folder, _verify_folder(folder, trusted_keys, base_model_sha256, device_id)


def verify_pack(
    path: Path, trusted_keys: list[Ed25519PublicKey], base_model_sha256: str, device_id: str | None = None
) -> PackManifest:
    """Check signature, consent (when `device_id`: the speaker it is for), every hash, base model,
    style and the form of a vocoder delta; raise VoicePackError naming the problem."""
    with _verified(path, trusted_keys, base_model_sha256, device_id) as (_, manifest):
        return manifest


def open_pack(
    path: Path,
    trusted_keys: list[Ed25519PublicKey],
    base_model_sha256: str,
    device_id: str | None = None,
    student: StudentBuild | None = None,
) -> tuple[PackManifest, Voice]:
    """Verify a pack without installing it and return its voice (to listen to it in the studio,
    which passes no `device_id`; a speaker always passes its own). A pack with an adapted vocoder
    needs the `student` it was made for; its merged head lives in a folder removed at exit."""
    with _verified(path, trusted_keys, base_model_sha256, device_id) as (folder, manifest):
        style = _check_style(folder / STYLE)
        if manifest.vocoder is None:
            return manifest, Voice(manifest.voice_id, style)
        keep = Path(tempfile.mkdtemp(prefix="voicepack-vocoder-"))
        atexit.register(shutil.rmtree, keep, True)
        shutil.copy(folder / adapted.DELTA_FILE, keep / adapted.DELTA_FILE)
        merge_vocoder(keep, manifest, student)
        return manifest, _voice(keep, manifest.voice_id, style)


def _voice(folder: Path, voice_id: str, style: np.ndarray) -> Voice:
    """The engine's voice for a pack folder; with the merged vocoder when the pack has one."""
    merged = folder / adapted.MERGED_FILE
    if not merged.is_file():
        return Voice(voice_id, style)
    digest = (folder / (adapted.MERGED_FILE + ".sha256")).read_text().strip()
    if _sha256(merged) != digest:
        raise VoicePackError(f"{voice_id}'s merged vocoder no longer matches its sha256; install the pack again")
    return Voice(voice_id, style, vocoder=merged, vocoder_sha256=digest)


def _swap_in(incoming: Path, voices_dir: Path, voice_id: str) -> Path:
    """Rename the verified pack into place, keeping the last pack known to play as `.previous`."""
    target, previous = voices_dir / voice_id, voices_dir / f"{voice_id}{_PREVIOUS}"
    aside: Path | None = None
    if target.exists():
        # An existing .previous has played; the current pack has not, so it is the one dropped.
        aside = previous if not previous.exists() else incoming.with_name(incoming.name + "-old")
        os.replace(target, aside)
    try:
        os.replace(incoming, target)
    except OSError:
        if aside is not None:
            os.replace(aside, target)
        raise
    if aside is not None and aside != previous:
        shutil.rmtree(aside, ignore_errors=True)
    fsync(voices_dir)
    return target


def stage_pack(
    pack: Path | bytes,
    voices_dir: Path,
    trusted_keys: list[Ed25519PublicKey],
    base_model_sha256: str,
    device_id: str | None = None,
    student: StudentBuild | None = None,
) -> tuple[Path, PackManifest]:
    """Unpack, verify and (for an adapted vocoder) merge into a hidden folder beside the voices,
    flushed to disk: all the slow work of an install, none of it visible. The caller swaps it in
    (`swap_in`) or removes it. A speaker passes its `device_id`: a pack whose consent names
    another speaker is refused; and its `student` build, which an adapted vocoder needs."""
    voices_dir = Path(voices_dir)
    voices_dir.mkdir(parents=True, exist_ok=True)
    incoming = Path(tempfile.mkdtemp(prefix=_INCOMING, dir=voices_dir))
    try:
        unpack(pack, incoming, trusted_keys)
        manifest = _verify_folder(incoming, trusted_keys, base_model_sha256, device_id)
        merge_vocoder(incoming, manifest, student)
        for entry in incoming.iterdir():
            fsync(entry)
        fsync(incoming)
    except BaseException:
        shutil.rmtree(incoming, ignore_errors=True)
        raise
    return incoming, manifest


def swap_in(incoming: Path, manifest: PackManifest) -> Path:
    """Rename a staged pack into place (fast); on failure the voices folder is as it was."""
    try:
        target = _swap_in(incoming, incoming.parent, manifest.voice_id)
    except BaseException:
        shutil.rmtree(incoming, ignore_errors=True)
        raise
    log.info("installed voice pack %s (%s) in %s", manifest.voice_id, manifest.display_name, target)
    return target


def install_pack(
    pack: Path | bytes,
    voices_dir: Path,
    trusted_keys: list[Ed25519PublicKey],
    base_model_sha256: str,
    device_id: str | None = None,
    student: StudentBuild | None = None,
) -> Path:
    """Verify and install atomically; on any failure the voices folder is left as it was."""
    return swap_in(*stage_pack(pack, voices_dir, trusted_keys, base_model_sha256, device_id, student))


def commit(voices_dir: Path, voice_id: str) -> None:
    """The new pack has played: the previous one is no longer needed."""
    shutil.rmtree(Path(voices_dir) / f"{voice_id}{_PREVIOUS}", ignore_errors=True)


def rollback(voices_dir: Path, voice_id: str) -> bool:
    """The new pack failed to play: put the previous one back. False when there is none."""
    previous = Path(voices_dir) / f"{voice_id}{_PREVIOUS}"
    if not re.fullmatch(VOICE_ID_PATTERN, voice_id) or not previous.is_dir():
        return False
    shutil.rmtree(Path(voices_dir) / voice_id, ignore_errors=True)
    os.replace(previous, Path(voices_dir) / voice_id)
    return True


def sweep(voices_dir: Path) -> int:
    """Remove half-installed packs and uploads; put back a previous pack a power cut left without a
    current one. Run at start and after a failed install, never while an install is under way."""
    voices_dir = Path(voices_dir)
    if not voices_dir.is_dir():
        return 0
    removed = 0
    for leftover in [*voices_dir.glob(f"{_INCOMING}*"), *voices_dir.glob(f"{_UPLOAD}*")]:
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
        removed += 1
    for previous in voices_dir.glob(f"*{_PREVIOUS}"):
        current = previous.with_name(previous.name.removesuffix(_PREVIOUS))
        if not current.exists():
            os.replace(previous, current)
    if removed:
        log.info("removed %d unfinished voice pack installs from %s", removed, voices_dir)
    return removed


def installed(voices_dir: Path) -> list[str]:
    """Ids of the installed packs (not the `.previous` ones kept for a rollback)."""
    folders = Path(voices_dir).iterdir() if Path(voices_dir).is_dir() else ()
    return sorted(p.name for p in folders if re.fullmatch(VOICE_ID_PATTERN, p.name) and (p / MANIFEST).is_file())


def has_previous(voices_dir: Path, voice_id: str) -> bool:
    """A replaced version of this pack is kept (it has not played to the end yet): `rollback` works."""
    return (Path(voices_dir) / f"{voice_id}{_PREVIOUS}" / MANIFEST).is_file()


def manifest_of(voices_dir: Path, voice_id: str) -> PackManifest:
    """An installed pack's manifest (signed and checked when it was installed)."""
    folder = Path(voices_dir) / voice_id
    if not re.fullmatch(VOICE_ID_PATTERN, voice_id) or not (folder / MANIFEST).is_file():
        raise VoiceError(f"no voice pack {voice_id!r} installed in {voices_dir}; installed: {installed(voices_dir)}")
    return PackManifest.model_validate_json((folder / MANIFEST).read_bytes())


def load_voice(voices_dir: Path, voice_id: str) -> Voice:
    """The installed pack's style as an engine `Voice`; its hash is checked again against the manifest."""
    folder = Path(voices_dir) / voice_id
    manifest = manifest_of(voices_dir, voice_id)
    if _sha256(folder / STYLE) != manifest.files[STYLE]:
        raise VoicePackError(f"installed {voice_id}/{STYLE} no longer matches its manifest; install the pack again")
    return _voice(folder, voice_id, _check_style(folder / STYLE))
