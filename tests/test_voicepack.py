"""Voice packs from the studio to the speaker: signed, checked, installed atomically or not at all."""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hearmylove import voicepack
from hearmylove.errors import VoiceError, VoicePackError
from hearmylove.voicepack import (
    Consent,
    commit,
    install_pack,
    load_public_key,
    load_voice,
    rollback,
    sweep,
    verify_pack,
)
from voicelab.pack import build_pack, generate_key, load_signing_key, public_key_base64

BASE_SHA = "ab" * 32
BIN = Path(sys.executable).parent
CONSENT = Consent(
    recorded_by="Mum",
    recorded_at=datetime(2025, 3, 1, 19, 30, tzinfo=UTC),
    device_id="speaker-kitchen",
    statement="I agree that my recorded voice may be used to tell stories to my children on this speaker.",
)


@pytest.fixture
def base_dir(tmp_path: Path) -> Path:
    """A stand-in for the exported base model: only its manifest matters to packs."""
    folder = tmp_path / "base"
    folder.mkdir()
    (folder / "manifest.json").write_text(
        json.dumps({"base_model": "kokoro-82m-v1.0-int8", "base_model_sha256": BASE_SHA})
    )
    return folder


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "studio.key"
    path.parent.mkdir()
    generate_key(path)
    return path


@pytest.fixture
def trusted(key: Path) -> list[Ed25519PublicKey]:
    return [load_public_key(key.with_suffix(".pub").read_text())]


@pytest.fixture
def voices(tmp_path: Path) -> Path:
    return tmp_path / "voices"


def make_pack(tmp_path: Path, key: Path, base_dir: Path, name: str = "pack", seed: int = 0, **kw: object) -> Path:
    style = kw.pop("style", np.random.default_rng(seed).standard_normal(256).astype(np.float32))
    out = tmp_path / name
    build_pack(style, "mum", "Mum", ["en", "zh"], CONSENT, {"similarity": 0.8}, base_dir, key, out)  # type: ignore[arg-type]
    return out


def as_python_3_11_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Debian bookworm's Python 3.11.2: tarfile has no extraction filters."""
    monkeypatch.delattr(tarfile, "data_filter")
    real = tarfile.TarFile.extractall

    def old_extractall(self: tarfile.TarFile, path: str = ".", members: object = None, **kw: object) -> None:
        assert "filter" not in kw, "Python 3.11.2 has no filter argument"
        real(self, path, members, filter="fully_trusted")  # type: ignore[arg-type]

    monkeypatch.setattr(tarfile.TarFile, "extractall", old_extractall)


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder` with its content (None for folders)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


def resign(folder: Path, key: Path, style: np.ndarray) -> None:
    """Replace the style and sign again, as a studio would: the pack is genuine but the style is bad."""
    np.save(folder / "style.npy", style)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["style.npy"] = voicepack._sha256(folder / "style.npy")
    data = json.dumps(manifest).encode()
    (folder / "manifest.json").write_bytes(data)
    (folder / "manifest.sig").write_bytes(load_signing_key(key).sign(data))


@pytest.mark.fast
@pytest.mark.parametrize("name", ["pack", "voice.tar"])
def test_a_good_pack_verifies_installs_and_loads(
    tmp_path: Path, key: Path, base_dir: Path, trusted: list[Ed25519PublicKey], voices: Path, name: str
) -> None:
    pack = make_pack(tmp_path, key, base_dir, name)
    manifest = verify_pack(pack, trusted, BASE_SHA)
    assert manifest.voice_id == "mum" and manifest.languages == ["en", "zh"] and manifest.consent == CONSENT

    target = install_pack(pack, voices, trusted, BASE_SHA)
    assert target == voices / "mum"
    assert sorted(p.name for p in voices.iterdir()) == ["mum"]
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json", "manifest.sig", "style.npy"]
    voice = load_voice(voices, "mum")
    assert voice.id == "mum" and voice.styles.shape == (1, 256)
    assert voicepack.installed(voices) == ["mum"]


@pytest.mark.fast
def test_reinstall_keeps_the_previous_pack_until_the_new_one_has_played(
    tmp_path: Path, key: Path, base_dir: Path, trusted: list[Ed25519PublicKey], voices: Path
) -> None:
    install_pack(make_pack(tmp_path, key, base_dir, "v1.tar", seed=1), voices, trusted, BASE_SHA)
    first = load_voice(voices, "mum").digest
    install_pack(make_pack(tmp_path, key, base_dir, "v2.tar", seed=2), voices, trusted, BASE_SHA)
    assert load_voice(voices, "mum").digest != first
    assert sorted(p.name for p in voices.iterdir()) == ["mum", "mum.previous"]
    assert voicepack.installed(voices) == ["mum"]

    # A third pack before the second has played: the older, proven one stays as previous.
    install_pack(make_pack(tmp_path, key, base_dir, "v3.tar", seed=3), voices, trusted, BASE_SHA)
    assert sorted(p.name for p in voices.iterdir()) == ["mum", "mum.previous"]
    assert rollback(voices, "mum") and load_voice(voices, "mum").digest == first

    install_pack(make_pack(tmp_path, key, base_dir, "v4.tar", seed=4), voices, trusted, BASE_SHA)
    commit(voices, "mum")
    assert sorted(p.name for p in voices.iterdir()) == ["mum"]
    assert not rollback(voices, "mum")


def _unsigned(pack: Path, key: Path) -> None:
    (pack / "manifest.sig").unlink()


def _untrusted(pack: Path, key: Path) -> None:
    other = key.with_name("other.key")
    generate_key(other)
    (pack / "manifest.sig").write_bytes(load_signing_key(other).sign((pack / "manifest.json").read_bytes()))


def _style_byte_changed(pack: Path, key: Path) -> None:
    data = bytearray((pack / "style.npy").read_bytes())
    data[-1] ^= 0x01
    (pack / "style.npy").write_bytes(bytes(data))


def _manifest_edited(pack: Path, key: Path) -> None:
    text = (pack / "manifest.json").read_text()
    (pack / "manifest.json").write_text(text.replace('"Mum"', '"Dad"', 1))


def _extra_file(pack: Path, key: Path) -> None:
    (pack / "run-me.sh").write_text("echo hi")


def _missing_file(pack: Path, key: Path) -> None:
    (pack / "style.npy").unlink()


def _nan_style(pack: Path, key: Path) -> None:
    style = np.zeros(256, dtype=np.float32)
    style[7] = np.nan
    resign(pack, key, style)


def _bad_shape(pack: Path, key: Path) -> None:
    resign(pack, key, np.zeros((2, 255), dtype=np.float32))


REFUSALS: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "unsigned": (_unsigned, "unsigned"),
    "untrusted key": (_untrusted, "does not match any of the 1 trusted key"),
    "style byte changed": (_style_byte_changed, "tampered file 'style.npy'"),
    "manifest edited after signing": (_manifest_edited, "does not match any"),
    "extra file": (_extra_file, r"extra file\(s\) \['run-me.sh'\]"),
    "missing file": (_missing_file, r"\['style.npy'\] listed in the manifest are missing"),
    "NaN in style": (_nan_style, "not finite"),
    "bad shape": (_bad_shape, r"bad shape \(2, 255\)"),
}


@pytest.mark.fast
@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_bad_pack_is_refused_and_the_installed_voice_is_untouched(
    tmp_path: Path, key: Path, base_dir: Path, trusted: list[Ed25519PublicKey], voices: Path, case: str
) -> None:
    install_pack(make_pack(tmp_path, key, base_dir, "good.tar"), voices, trusted, BASE_SHA)
    before = snapshot(voices)
    spoil, message = REFUSALS[case]
    pack = make_pack(tmp_path, key, base_dir, "bad", seed=9)
    spoil(pack, key)
    with pytest.raises(VoicePackError, match=message):
        verify_pack(pack, trusted, BASE_SHA)
    with pytest.raises(VoicePackError, match=message):
        install_pack(pack, voices, trusted, BASE_SHA)
    assert snapshot(voices) == before


@pytest.mark.fast
def test_a_pack_for_another_base_model_is_refused(
    tmp_path: Path, key: Path, base_dir: Path, trusted: list[Ed25519PublicKey], voices: Path
) -> None:
    pack = make_pack(tmp_path, key, base_dir, "voice.tar")
    with pytest.raises(VoicePackError, match=f"wrong base model: the speaker runs {'cd' * 8}, .* {'ab' * 8}"):
        install_pack(pack, voices, trusted, "cd" * 32)
    assert snapshot(voices) == {}


@pytest.mark.fast
def test_no_trusted_keys_and_not_a_pack_are_explained(
    tmp_path: Path, key: Path, base_dir: Path, trusted: list[Ed25519PublicKey]
) -> None:
    with pytest.raises(VoicePackError, match="no trusted studio keys"):
        verify_pack(make_pack(tmp_path, key, base_dir), [], BASE_SHA)
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    with pytest.raises(VoicePackError, match="not a voice pack"):
        verify_pack(junk, trusted, BASE_SHA)


def _tar_with(tmp_path: Path, good: Path, evil: tarfile.TarInfo) -> Path:
    out = tmp_path / "evil.tar"
    with tarfile.open(out, "w") as tar:
        for f in sorted(good.iterdir()):
            tar.add(f, arcname=f.name)
        tar.addfile(evil, io.BytesIO(b"x" * evil.size) if evil.isfile() else None)
    return out


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, 1 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.fast
@pytest.mark.parametrize(
    ("evil", "message"),
    [
        (_member("../evil"), "'../evil' would escape"),
        (_member("sub/../../evil"), "would escape"),
        (_member("/tmp/evil-abs"), "'/tmp/evil-abs' has an absolute path"),
        (_member("style-link", tarfile.SYMTYPE, "/etc/passwd"), "'style-link' is a link or device"),
        (_member("hard", tarfile.LNKTYPE, "style.npy"), "'hard' is a link or device"),
        (_member("dev", tarfile.CHRTYPE), "'dev' is a link or device"),
    ],
)
@pytest.mark.parametrize("python", ["3.11.4+", "3.11.2 (Debian bookworm: no tar filters)"])
def test_tar_members_that_escape_or_link_are_refused(
    tmp_path: Path,
    key: Path,
    base_dir: Path,
    trusted: list[Ed25519PublicKey],
    voices: Path,
    evil: tarfile.TarInfo,
    message: str,
    python: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if "bookworm" in python:
        as_python_3_11_2(monkeypatch)
    install_pack(make_pack(tmp_path, key, base_dir, "good.tar"), voices, trusted, BASE_SHA)
    before = snapshot(voices)
    pack = _tar_with(tmp_path, make_pack(tmp_path, key, base_dir, "good-dir"), evil)
    with pytest.raises(VoicePackError, match=message):
        install_pack(pack, voices, trusted, BASE_SHA)
    assert snapshot(voices) == before
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil-abs").exists()


class _RenameIntoPlaceFails:
    """`os` for the voicepack module, except that renaming the unpacked pack into place fails."""

    def __getattr__(self, name: str) -> object:
        return getattr(os, name)

    @staticmethod
    def replace(src: Path, dst: Path) -> None:
        if Path(src).name.startswith(".incoming-"):
            raise OSError(errno.EIO, "simulated failure in the final rename")
        os.replace(src, dst)


@pytest.mark.fast
def test_a_failure_in_the_final_rename_leaves_the_old_voice(
    tmp_path: Path,
    key: Path,
    base_dir: Path,
    trusted: list[Ed25519PublicKey],
    voices: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install_pack(make_pack(tmp_path, key, base_dir, "v1.tar", seed=1), voices, trusted, BASE_SHA)
    before = snapshot(voices)
    monkeypatch.setattr(voicepack, "os", _RenameIntoPlaceFails())
    with pytest.raises(OSError, match="simulated"):
        install_pack(make_pack(tmp_path, key, base_dir, "v2.tar", seed=2), voices, trusted, BASE_SHA)
    sweep(voices)
    assert snapshot(voices) == before


@pytest.mark.fast
def test_sweep_cleans_up_after_a_power_cut(
    tmp_path: Path, key: Path, base_dir: Path, trusted: list[Ed25519PublicKey], voices: Path
) -> None:
    install_pack(make_pack(tmp_path, key, base_dir, "v1.tar"), voices, trusted, BASE_SHA)
    digest = load_voice(voices, "mum").digest
    # Power lost after the old pack was moved aside but before the new one was renamed in.
    os.replace(voices / "mum", voices / "mum.previous")
    (voices / ".incoming-abc123").mkdir()
    (voices / ".incoming-abc123" / "style.npy").write_bytes(b"half")
    assert sweep(voices) == 1
    assert sorted(p.name for p in voices.iterdir()) == ["mum"]
    assert load_voice(voices, "mum").digest == digest


@pytest.mark.fast
def test_load_voice_refuses_unknown_ids_and_paths(voices: Path) -> None:
    voices.mkdir()
    with pytest.raises(VoiceError, match="no voice pack 'dad' installed"):
        load_voice(voices, "dad")
    with pytest.raises(VoiceError, match="no voice pack"):
        load_voice(voices, "../base")


@pytest.mark.fast
def test_public_keys_load_from_pem_or_base64(key: Path) -> None:
    pem = load_public_key(key.with_suffix(".pub").read_text())
    raw = load_public_key(public_key_base64(load_signing_key(key)))
    assert pem.public_bytes_raw() == raw.public_bytes_raw()
    with pytest.raises(VoicePackError, match="not an ed25519 public key"):
        load_public_key("not-a-key")


@pytest.mark.fast
def test_keygen_writes_an_owner_only_key_and_never_overwrites(key: Path) -> None:
    assert key.stat().st_mode & 0o777 == 0o600
    with pytest.raises(VoicePackError, match="refusing to overwrite"):
        generate_key(key)


def voicelab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "voicelab"), *args], capture_output=True, text=True, timeout=120)


def test_voicelab_ships_a_stock_voice_as_a_signed_pack(model_dir: Path, tmp_path: Path) -> None:
    key, other, pack = tmp_path / "studio.key", tmp_path / "other.key", tmp_path / "alpha.tar"
    result = voicelab("keygen", "--out", str(key))
    assert result.returncode == 0, result.stderr
    assert "trusted_keys" in result.stdout and key.with_suffix(".pub").is_file()
    result = voicelab(
        "pack", "--stock-voice", "jf_alpha", "--name", "alpha", "--display-name", "Alpha", "--lang", "en",
        "--lang", "zh", "--recorded-by", "Studio", "--device-id", "any", "--quality", "similarity=1.0",
        "--key", str(key), "--out", str(pack), "--model-dir", str(model_dir),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    result = voicelab("verify", str(pack), "--pub", str(key.with_suffix(".pub")), "--model-dir", str(model_dir))
    assert result.returncode == 0, result.stderr
    assert "OK, voice 'alpha'" in result.stdout

    voicelab("keygen", "--out", str(other))
    result = voicelab("verify", str(pack), "--pub", str(other.with_suffix(".pub")), "--model-dir", str(model_dir))
    assert result.returncode == 2 and "does not match any" in result.stderr


def test_voicelab_names_a_missing_key_file_without_a_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [str(Path(sys.executable).parent / "voicelab"), "verify", str(tmp_path / "x.tar"), "--pub", "nope.pub"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "nope.pub" in result.stderr and "Traceback" not in result.stderr
