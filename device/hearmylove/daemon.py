"""The composition root: builds the adapters around the controller and runs the loop.

Every adapter thread (paho's network loop, gpiozero's pins, the player, the renderer)
only posts inputs to one queue; this loop applies them in order, so the controller
never needs a lock.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from . import __version__, basemodel
from . import protocol as p
from .audio import Player, SoundDeviceOutput
from .config import DaemonConfig
from .controller import Controller, Limits
from .controls import Controls
from .engine.cache import RenderCache
from .engine.engine import ENGINE_VERSION, Engine
from .engine.vocoders import installed_student
from .library import Library
from .messages import Light, Pressed, Rendered, RenderFailed
from .mqtt import Incoming, MqttLink
from .renderer import Renderer
from .voicestore import VoiceStore

log = logging.getLogger(__name__)


_PACK_WORKER = (p.VoiceInstall.NAME, p.VoiceRollback.NAME)
"""Commands that move pack folders: run one at a time on the pack worker, never on the loop."""


def sd_notify(message: str) -> None:
    """Tell systemd how we are (Type=notify, WatchdogSec); a no-op outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), address)


class Daemon:
    """The speaker: the controller with its library, engine, renderer, player, MQTT link and
    buttons, built from the config.

    `engine`, `output` (an audio `Output`) and `pin_factory` (gpiozero's) replace the real
    ones, for tests and the demo. Building it loads the models and opens the sound card and
    the pins; raises ModelError when the models are missing or damaged, AudioError when the
    sound card cannot open. Nothing connects to the broker before `run`.
    """

    def __init__(
        self,
        config: DaemonConfig,
        *,
        engine: Engine | None = None,
        output: Any = None,
        pin_factory: Any = None,
    ) -> None:
        self.config = config
        self.inputs: queue.Queue[object] = queue.Queue()
        state_dir = Path(config.state_dir)
        self.library = Library(state_dir / "library.sqlite3")
        self.engine = engine or Engine.load(config.engine)
        self.voices = VoiceStore(
            state_dir / "voices",
            config.trusted_keys,
            str(basemodel.read_manifest(config.engine.model_dir)["base_model_sha256"]),
            stock=self.engine.voice,
            device_id=config.device_id,
            student=installed_student(config.engine.model_dir),
        )
        self.renderer = Renderer(
            self.engine,
            RenderCache(state_dir / "renders"),
            on_ready=lambda story_id, seconds: self.inputs.put(Rendered(story_id, seconds)),
            on_failed=lambda story_id, message: self.inputs.put(RenderFailed(story_id, message)),
            voice_of=lambda story, lang: self.voices.resolve(story.voice, lang, self.library.settings().get("voice")),
        )
        self.player = Player(config.audio, output if output is not None else SoundDeviceOutput(config.audio))
        self.link = MqttLink(config.mqtt, config.device_id, on_command=self.inputs.put)
        if pin_factory is None and config.simulate_pins:
            from gpiozero.pins.mock import MockFactory, MockPWMPin

            pin_factory = MockFactory(pin_class=MockPWMPin)
        self.controls = Controls(
            config.controls,
            on_action=lambda button: self.inputs.put(Pressed(button)),
            pin_factory=pin_factory,
        )
        story = config.story
        self.controller = Controller(
            self.library,
            self.renderer,
            self.player,
            self.link,
            light=self._show,
            post=self.inputs.put,
            limits=Limits(
                max_story_chars=story.max_story_chars,
                hard_max_volume=config.audio.max_volume,
                progress_interval=story.progress_interval,
                default_quiet_hours=story.quiet_hours,
                default_sleep_timer_minutes=story.sleep_timer_minutes,
            ),
            versions={"hearmylove": __version__, "engine": ENGINE_VERSION, "protocol": str(p.PROTOCOL_VERSION)},
            voices=self.voices,
        )
        # Packs are unpacked, hashed and flushed on their own thread, one at a time, so the
        # loop keeps answering (and pinging the watchdog) while a pack installs.
        self._packs = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hml-pack")

    def _show(self, light: Light) -> None:
        brightness = self.library.settings().get("led_brightness")
        if brightness is not None:
            self.controls.set_brightness(float(brightness))
        self.controls.led(light)

    def command(self, incoming: Incoming) -> p.Reply:
        """Parse, execute once, reply, then acknowledge: a crash before the ack means
        redelivery. Whatever happens inside, the command ends in one outcome and an ack."""
        try:
            reply = self._outcome(incoming)
            if not reply.ok:
                log.info("refused %s: %s", incoming.name, reply.error.message if reply.error else "")
            self.link.reply(reply, incoming)
            return reply
        finally:
            self.link.ack(incoming)

    @property
    def _validity(self) -> timedelta:
        """How old a command may be: as long as the broker keeps it for us (an hour at least,
        for clocks that disagree)."""
        return timedelta(seconds=max(self.config.mqtt.session_expiry, 3600))

    def _outcome(self, incoming: Incoming) -> p.Reply:
        """The reply to one command; never raises."""
        try:
            if incoming.retain:
                raise p.ProtocolError(
                    "retained",
                    f"{incoming.name} was published retained; commands run once, when sent, and are never retained",
                    p.sniff_id(incoming.payload),
                )
            command = p.parse_command(incoming.name, incoming.payload, self.config.story.max_payload_bytes)
            p.check_fresh(command, datetime.now(UTC), self._validity)
            return self.controller.handle(command)
        except p.ProtocolError as exc:
            return p.Reply.failure(exc.code, str(exc), exc.command_id)
        except Exception as exc:  # noqa: BLE001 - the daemon never dies on input
            log.exception("command %s failed", incoming.name)
            return p.Reply.failure("internal", f"{incoming.name} failed: {exc}", p.sniff_id(incoming.payload))

    def run(self, stop: threading.Event) -> None:
        """Connect and apply inputs in order until `stop` is set, telling systemd (if it started
        the speaker) when it is ready and that it is alive; closes everything on the way out."""
        self.controller.announce()
        self.renderer.resume(self.library.stories)  # renders a restart or power cut left undone
        self.link.start()
        sd_notify("READY=1")
        log.info("speaker %s ready", self.config.device_id)
        last_ping = 0.0
        try:
            while not stop.is_set():
                try:
                    item = self.inputs.get(timeout=0.25)
                except queue.Empty:
                    item = None
                if isinstance(item, Incoming) and item.name in _PACK_WORKER:
                    self._packs.submit(self._answer, item)
                elif isinstance(item, Incoming):
                    self._answer(item)
                elif item is not None:
                    self.controller.dispatch(item)
                self.controller.tick()
                now = time.monotonic()
                if now - last_ping > 5:
                    sd_notify("WATCHDOG=1")
                    last_ping = now
        finally:
            sd_notify("STOPPING=1")
            self.close()

    def _answer(self, incoming: Incoming) -> None:
        """On the loop, or for voice.install and voice.rollback on the pack worker: their path
        (voicecommands.py) touches only the library, the voice store and the renderer's queue,
        all thread-safe."""
        try:
            self.command(incoming)
        except Exception:  # noqa: BLE001 - the daemon never dies on input
            log.exception("command %s could not be answered", incoming.name)

    def close(self) -> None:
        """Release the link, the player, the renderer, the pins and the library.

        An install under way finishes and replies; a queued one is never acked, so it comes again.
        """
        self._packs.shutdown(wait=True, cancel_futures=True)
        self.link.stop()
        self.player.close()
        self.renderer.close()
        self.controls.close()
        self.library.close()
