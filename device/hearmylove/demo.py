"""`hearmylove demo`: the whole path on one machine, as a parent and a child would see it.

A local Mosquitto (passwords and ACLs as in production), the daemon with simulated
buttons, and a parent client that sends `story.put` + `story.tell`; the story plays on
the sound card, or through PortAudio into an ALSA file device when `--out` is given,
and the demo ends when `story.finished` arrives.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import soundfile as sf

from .broker import Account, LocalBroker
from .errors import AudioError, HearMyLoveError

if TYPE_CHECKING:  # imported when the demo runs: `hearmylove --help` stays quick
    from .daemon import Daemon
    from .remote import Remote

log = logging.getLogger(__name__)

DEVICE = "demo-speaker"
PARENT = "demo-parent"


def _say(message: str) -> None:
    print(f"demo: {message}", file=sys.stderr, flush=True)


def run_demo(text: str, out: Path | None, lang: str = "auto", timeout: float = 600.0) -> int:
    """Tell `text` through a local broker and a real daemon, as a parent would; return the exit status.

    With `out`, what PortAudio played is written there as a 16-bit WAV (no sound card needed).
    Raises HearMyLoveError when the speaker refuses the story or reports an error, AudioError
    when there is no sound card and no `out`, BrokerError when Mosquitto cannot start.
    """
    with tempfile.TemporaryDirectory(prefix="hml-demo-") as tmp:
        folder = Path(tmp)
        raw = folder / "played.raw"
        if out is not None:
            from .audio import alsa_file_config

            # Must happen before PortAudio starts: the default ALSA device becomes a file.
            os.environ.update(alsa_file_config(raw, folder / "asound.conf"))
        device_password, parent_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
        broker = LocalBroker(
            folder / "broker",
            [Account(DEVICE, device_password), Account(PARENT, parent_password, devices=(DEVICE,))],
        )
        _say(f"starting Mosquitto on 127.0.0.1:{broker.port}")
        with broker:
            from .remote import Remote

            daemon = _daemon(folder, broker.port, device_password, out)
            stop = threading.Event()
            thread = threading.Thread(target=daemon.run, args=(stop,), name="hml-daemon", daemon=True)
            thread.start()
            try:
                with Remote("127.0.0.1", broker.port, PARENT, parent_password) as parent:
                    _tell(parent, text, lang, timeout)
            finally:
                stop.set()
                thread.join(timeout=30)
        if out is not None:
            from .audio import read_alsa_raw

            audio = read_alsa_raw(raw)
            sf.write(str(out), audio, 24_000, subtype="PCM_16")
            _say(f"wrote what PortAudio played to {out} ({len(audio) / 24_000:.1f} s)")
    return 0


def _daemon(folder: Path, port: int, password: str, out: Path | None) -> Daemon:
    """The speaker with simulated buttons, its state in `folder`, logged in to the local broker."""
    from .config import DaemonConfig
    from .daemon import Daemon

    config = DaemonConfig(
        device_id=DEVICE,
        state_dir=folder / "state",
        simulate_pins=True,
        mqtt={"host": "127.0.0.1", "port": port, "tls": False, "username": DEVICE, "password": password},
    )
    _say("loading the speech engine")
    try:
        return Daemon(config)
    except AudioError as exc:
        if out is not None:
            raise
        raise AudioError(f"{exc}. No sound card here? Write the story to a file: --out told.wav") from exc


def _tell(parent: Remote, text: str, lang: str, timeout: float) -> None:
    """The parent's side: send the story, tell it now, and follow its events until it ends."""
    parent.wait_for("availability", timeout=30, device_id=DEVICE)
    reply = parent.send(DEVICE, "story.put", story_id="demo", title="Demo story", text=text, lang=lang)
    if not reply.ok:
        raise HearMyLoveError(f"the speaker refused the story: {reply.error.message}")  # type: ignore[union-attr]
    _say("story sent; telling it now")
    reply = parent.send(DEVICE, "story.tell", story_id="demo")
    if not reply.ok:
        raise HearMyLoveError(f"the speaker refused to tell it: {reply.error.message}")  # type: ignore[union-attr]
    started = time.monotonic()
    while True:
        message = parent.wait_for("event", timeout=max(1.0, timeout - (time.monotonic() - started)))
        if message.name == "story.started":
            _say("the speaker started telling the story")
        elif message.name == "story.progress":
            _say(f"... {message.payload['position']:.0f} s told")
        elif message.name == "error":
            raise HearMyLoveError(f"the speaker reported: {message.payload['message']}")
        elif message.name == "story.finished":
            _say("story.finished: the child heard it to the end")
            return
