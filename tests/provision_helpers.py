"""Shared makers for the provisioning tests: a valid identity folder, a small image with a FAT partition."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from hearmylove.tls import make_tls
from hearmylove.voicepack import Consent
from hearmylove_provision import tomlout
from voicelab.pack import build_pack, generate_key, load_signing_key, public_key_base64

BASE_SHA = "cd" * 32
CONSENT = Consent(
    recorded_by="Mum",
    recorded_at=datetime(2025, 3, 1, 19, 30, tzinfo=UTC),
    device_id="kid-001",
    statement="I agree that my recorded voice may be used to tell stories to my children on this speaker.",
)


def need(*tools: str) -> None:
    for name in tools:
        if shutil.which(name) is None and not Path(f"/usr/sbin/{name}").exists() and not Path(f"/sbin/{name}").exists():
            pytest.fail(f"{name} is missing: run setup.sh (apt-get install mtools dosfstools fdisk)")


def identity_data(folder: Path, **overrides: object) -> dict[str, object]:
    """A valid identity as a dict, its CA written into `folder`; keys in `overrides` replace (None removes)."""
    tls = make_tls(folder / "tls", ["broker.example.org"])
    shutil.copyfile(tls.ca_cert, folder / "family-ca.crt")
    data: dict[str, object] = {
        "device_id": "kid-001",
        "timezone": "Europe/London",
        "wifi": {"ssid": "Home Sweet Home", "passphrase": "correct horse battery", "country": "GB"},
        "broker": {
            "url": "mqtts://broker.example.org:8883",
            "ca": "family-ca.crt",
            "username": "kid-001",
            "password": "s3cret-pass",
        },
        "trusted_keys": [],
    }
    for key, value in overrides.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def write_identity(folder: Path, data: dict[str, object], name: str = "kid.toml") -> Path:
    path = folder / name
    path.write_text(tomlout.dumps(data))
    return path


def base_model_dir(folder: Path) -> Path:
    """A stand-in for the exported base model: only its manifest matters to packs."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(
        json.dumps({"base_model": "kokoro-82m-v1.0-int8", "base_model_sha256": BASE_SHA})
    )
    return folder


def studio_key(folder: Path) -> tuple[Path, str]:
    """A studio signing key and its public half in the base64 form identities carry."""
    path = folder / "keys" / "studio.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    generate_key(path)
    return path, public_key_base64(load_signing_key(path))


def voice_pack(folder: Path, key: Path, base_dir: Path, name: str = "mama.tar") -> Path:
    """A real signed voice pack (.tar), as `voicelab pack` makes it."""
    style = np.random.default_rng(7).standard_normal(256).astype(np.float32)
    out = folder / name
    build_pack(style, "mama", "Mama", ["en", "zh"], CONSENT, {"similarity": 0.8}, base_dir, key, out)
    return out


def fat_image(path: Path, size_mib: int = 48, fat_mib: int = 32) -> Path:
    """An image file like the real one in shape: MBR, a FAT partition at 1 MiB, a Linux partition after it."""
    need("sfdisk", "mkfs.vfat")
    with open(path, "wb") as f:
        f.truncate(size_mib << 20)
    fat_sectors = fat_mib << 11
    table = f"label: dos\nstart=2048, size={fat_sectors}, type=c\nstart={2048 + fat_sectors}, type=83\n"
    subprocess.run(["sfdisk", "-q", str(path)], input=table.encode(), check=True, capture_output=True)
    fat = path.with_suffix(".fat")
    with open(fat, "wb") as f:
        f.truncate(fat_mib << 20)
    subprocess.run(["mkfs.vfat", "-n", "HMLBOOT", str(fat)], check=True, capture_output=True)
    with open(path, "r+b") as out, open(fat, "rb") as src:
        out.seek(1 << 20)
        shutil.copyfileobj(src, out)
    fat.unlink()
    return path
