"""Pairing a parent's phone without typing: a link (and its QR code) that fills in the web
app's login and connects.

The link is the app's address with `#pair=<base64url JSON>`: the broker's WebSocket address
and the parent's credentials. They ride in the fragment, which a browser never sends to a
server (nor puts in a Referer), so the web server's logs never see the password. The app
reads the fragment, removes it from the address bar and history, and logs in. A link is
revoked by giving the account a new password (`broker new-password`).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path
from typing import Literal, TextIO
from urllib.parse import urldefrag

import segno
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hearmylove.errors import ConfigError

FRAGMENT = "pair="


class Pairing(BaseModel):
    """What a pairing link carries (parent/web/js/pairing.js reads the same fields)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    v: Literal[1] = 1
    url: str = Field(pattern=r"^wss?://")
    """The broker's MQTT-over-WebSockets address, e.g. wss://broker.example.org:8884."""
    username: str = Field(min_length=1)
    password: str = Field(min_length=1)


def link(app_url: str, pairing: Pairing) -> str:
    """The app's address with the pairing in its fragment (any fragment it had is replaced)."""
    data = json.dumps(pairing.model_dump(), separators=(",", ":")).encode()
    return f"{urldefrag(app_url).url}#{FRAGMENT}{base64.urlsafe_b64encode(data).decode().rstrip('=')}"


def read(pair_link: str) -> Pairing:
    """The pairing inside a link (what the app does, for tests and for checking a link)."""
    fragment = urldefrag(pair_link).fragment
    if not fragment.startswith(FRAGMENT):
        raise ConfigError(f"{pair_link[:60]!r} is not a pairing link: it has no #{FRAGMENT}...")
    encoded = fragment.removeprefix(FRAGMENT)
    try:
        data = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        return Pairing.model_validate_json(data)
    except (binascii.Error, ValueError, ValidationError) as exc:
        raise ConfigError(f"the pairing link is damaged ({exc}); make a new one") from None


def write_png(pair_link: str, path: Path) -> Path:
    """The QR code as a PNG only its owner can read: it holds a password."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        segno.make(pair_link, error="m").save(out, kind="png", scale=8, border=4)
    os.replace(tmp, path)
    return path


def print_qr(pair_link: str, out: TextIO) -> None:
    """The QR code drawn in the terminal, for a phone's camera."""
    segno.make(pair_link, error="m").terminal(out=out, compact=True)
