"""The speaker's one state machine: commands, buttons, timers and the player all go
through here, on one thread, in the order they happened.

It knows nothing of MQTT, GPIO or sound cards: it talks to ports (the Protocols in
`ports`). Adapters running on other threads never call it directly; they post inputs
(`messages`) to the daemon's queue, and the daemon hands them to `Controller.dispatch`.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from . import protocol as p
from .errors import HearMyLoveError
from .library import Library, Story
from .messages import (
    AudioStarted,
    Button,
    Light,
    PlaybackEnded,
    Pressed,
    Progress,
    Rendered,
    RenderFailed,
    SourceFailed,
    VoicesChanged,
)
from .ports import PlayerPort, Publisher, RendererPort
from .voicecommands import ACTIVE, VoiceCommands, VoicesPort

log = logging.getLogger(__name__)


MISSED_AFTER_SECONDS = 3600
"""A scheduled story more than this late (the speaker was off) is not told at a random hour."""


class State(enum.Enum):
    """Where the speaker is; published in `state` and shown by the LED."""

    IDLE = "idle"
    RENDERING = "rendering"  # asked to tell; waiting for the first audio
    PLAYING = "playing"
    PAUSED = "paused"
    SLEEPING = "sleeping"  # the sleep timer ended playback; a press wakes it
    ERROR = "error"


@dataclass
class Limits:
    """What the installer's config file sets for the controller; parents' settings stay inside it."""

    max_story_chars: int = 50_000
    """Longest story text accepted (`story.put`, `story.tell` with text)."""
    hard_max_volume: float = 1.0
    """The installer's ceiling: no parent setting goes above it."""
    progress_interval: float = 10.0
    """Seconds of story between `story.progress` events."""
    default_quiet_hours: p.QuietHours | None = None
    """Quiet hours until a parent sets their own."""
    default_sleep_timer_minutes: int = 0
    """Sleep timer until a parent sets their own (0: off)."""


@dataclass
class _Playing:
    story: Story
    token: int
    position: float = 0.0
    failed: str | None = None
    last_progress_event: float = 0.0

    def __post_init__(self) -> None:
        self.last_progress_event = self.position  # the first event comes one interval in


class Controller:
    """The speaker's state machine: executes commands, button presses and the adapters' news.

    `library` keeps stories, progress, settings and command ids; `renderer`, `player` and
    `publisher` are its ports; `light(Light)` sets the LED and `post(item)` queues an input
    for a later `dispatch` (the player's callbacks come back this way, on the daemon's
    thread). `clock` is injectable so tests can move time; `voices` handles the voice
    commands (None: they answer that no voice store is set up). Call everything from one
    thread: the controller holds no locks.
    """

    def __init__(
        self,
        library: Library,
        renderer: RendererPort,
        player: PlayerPort,
        publisher: Publisher,
        light: Callable[[Light], None],
        post: Callable[[object], None],
        limits: Limits | None = None,
        versions: dict[str, str] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now().astimezone(),
        voices: VoicesPort | None = None,
    ) -> None:
        self.voice_commands = VoiceCommands(library, renderer, voices, changed=lambda: post(VoicesChanged()))
        self.library = library
        self.renderer = renderer
        self.player = player
        self.publisher = publisher
        self._light = light
        self._post = post
        self.limits = limits or Limits()
        self.versions = versions or {}
        self.clock = clock
        self.state = State.IDLE
        self.current: _Playing | None = None
        self._token = 0
        self._sleep_deadline: datetime | None = None
        self._next_due = self._soonest_due()
        stored = library.settings()
        self.volume = float(stored.get("volume", 0.5))
        self.player.set_volume(min(self.volume, self.max_volume))

    @property
    def voices(self) -> VoicesPort | None:
        """The voice store the voice commands use (set after start-up once packs are loaded)."""
        return self.voice_commands.voices

    @voices.setter
    def voices(self, voices: VoicesPort | None) -> None:
        self.voice_commands.voices = voices

    # -- settings ------------------------------------------------------------------

    @property
    def max_volume(self) -> float:
        """The parent's maximum volume, never above the installer's `hard_max_volume`."""
        chosen = self.library.settings().get("max_volume", self.limits.hard_max_volume)
        return min(float(chosen), self.limits.hard_max_volume)

    @property
    def quiet_hours(self) -> p.QuietHours | None:
        """The parent's quiet hours if they set any (None: switched off), else the config's."""
        stored = self.library.settings()
        if "quiet_hours" in stored:
            return p.QuietHours.model_validate(stored["quiet_hours"]) if stored["quiet_hours"] else None
        return self.limits.default_quiet_hours

    @property
    def sleep_timer_minutes(self) -> int:
        """Minutes after which a story started now is stopped (0: no sleep timer)."""
        return int(self.library.settings().get("sleep_timer_minutes", self.limits.default_sleep_timer_minutes))

    def in_quiet_hours(self) -> bool:
        """Whether now (by `clock`) is inside the quiet hours: parents' tells are refused then."""
        quiet = self.quiet_hours
        return quiet is not None and quiet.contains(self.clock().timetz().replace(tzinfo=None))

    # -- the single entry point ----------------------------------------------------

    def dispatch(self, item: object) -> None:
        """Apply one input; never raises (a bad input is logged, the speaker goes on)."""
        try:
            self._dispatch(item)
        except Exception:  # noqa: BLE001 - the top of the loop: log, recover, go on
            log.exception("controller failed on %r", item)
            self._enter(State.ERROR)

    def _dispatch(self, item: object) -> None:
        playing = self.current
        match item:
            case Pressed(button):
                self.press(button)
            case AudioStarted(token) if playing and token == playing.token:
                self._audio_started(playing)
            case Progress(token, position) if playing and token == playing.token:
                self._progress(playing, position)
            case SourceFailed(token, message) if playing and token == playing.token:
                playing.failed = message
            case PlaybackEnded(token, completed) if playing and token == playing.token:
                self._ended(playing, completed)
            case Rendered(story_id, duration):
                self._rendered(story_id, duration)
            case VoicesChanged():
                self._publish_state()
            case RenderFailed(story_id, message):
                self.publisher.event(p.ErrorEvent(code="invalid", message=f"story {story_id!r}: {message}"))
            case AudioStarted() | Progress() | SourceFailed() | PlaybackEnded():
                pass  # from a story that was replaced: stale
            case _:
                log.warning("unknown input %r", item)

    # -- commands ------------------------------------------------------------------

    def handle(self, command: p.Command) -> p.Reply:
        """Execute a command once; a repeated id gets the first reply again."""
        previous = self.library.seen(command.id)
        if previous:
            reply = p.Reply.model_validate_json(previous)
            return reply.model_copy(update={"result": {**reply.result, "duplicate": True}})
        try:
            result = self._execute(command)
            reply = p.Reply(id=command.id, ok=True, result=result)
        except p.ProtocolError as exc:
            reply = p.Reply.failure(exc.code, str(exc), command.id)
        except HearMyLoveError as exc:
            reply = p.Reply.failure("invalid", str(exc), command.id)
        self.library.remember(command.id, command.NAME, reply.model_dump_json())
        return reply

    def _execute(self, command: p.Command) -> dict[str, Any]:
        handlers: dict[type[p.Command], Callable[[Any], dict[str, Any]]] = {
            p.StoryPut: self._story_put,
            p.StoryDelete: self._story_delete,
            p.StoryList: lambda _: {"stories": [self._info(s).model_dump() for s in self.library.stories()]},
            p.StoryTell: self._story_tell,
            p.PlaybackPause: self._playback_pause,
            p.PlaybackResume: self._playback_resume,
            p.PlaybackStop: self._playback_stop,
            p.PlaybackNext: self._playback_next,
            p.VolumeSet: lambda c: {"volume": self._set_volume(c.volume)},
            p.SettingsPut: self._settings_put,
            **self.voice_commands.handlers(),
            p.Ping: lambda _: {
                "pong": True,
                "state": self.state.value,
                "voices": self.voices.ids() if self.voices else [],
            },
        }
        handler = handlers.get(type(command))
        if handler is None:
            raise p.ProtocolError("unknown_command", f"unhandled command {command.NAME!r}")
        return handler(command)

    def _story_delete(self, command: p.StoryDelete) -> dict[str, Any]:
        if self.current and self.current.story.id == command.story_id:
            self._stop("stopped")
        self.renderer.cancel(command.story_id)
        if not self.library.delete(command.story_id):
            raise p.ProtocolError("not_found", f"no story with id {command.story_id!r}")
        return {"story_id": command.story_id, "deleted": True}

    def _playback_pause(self, command: p.PlaybackPause) -> dict[str, Any]:
        if self.state is not State.PLAYING:
            raise p.ProtocolError("not_playing", f"nothing is playing (state: {self.state.value})")
        self._pause()
        return {"state": self.state.value}

    def _playback_resume(self, command: p.PlaybackResume) -> dict[str, Any]:
        if self.state is not State.PAUSED:
            raise p.ProtocolError("not_playing", f"nothing is paused (state: {self.state.value})")
        self._resume()
        return {"state": self.state.value}

    def _playback_stop(self, command: p.PlaybackStop) -> dict[str, Any]:
        if self.current is None:
            raise p.ProtocolError("not_playing", "nothing is playing")
        self._stop("stopped")
        return {"state": self.state.value}

    def _playback_next(self, command: p.PlaybackNext) -> dict[str, Any]:
        story = self.library.after(self.current.story.id if self.current else self._last_id())
        if story is None:
            raise p.ProtocolError("not_found", "the speaker has no stories yet")
        self._start(story, from_start=False, reason="next")
        return {"story_id": story.id}

    def _story_put(self, command: p.StoryPut) -> dict[str, Any]:
        self._check_text(command.text, command.lang)
        self.voice_commands.check(command.voice)
        new = self.library.put_story(command.story_id, command.title, command.text, command.lang, command.voice)
        story = self.library.get(command.story_id)
        assert story is not None
        self.renderer.prerender(story)
        if self.state in (State.IDLE, State.SLEEPING) and not self.in_quiet_hours():
            self.player.chime()
        if self.state is State.IDLE:
            self._light(Light.NEW_STORY)
        return {"story_id": story.id, "new": new}

    def _check_text(self, text: str, lang: str) -> None:
        if len(text) > self.limits.max_story_chars:
            raise p.ProtocolError(
                "too_large", f"story text is {len(text):,} characters; the limit is {self.limits.max_story_chars:,}"
            )
        self.renderer.check(text, lang)

    def _story_tell(self, command: p.StoryTell) -> dict[str, Any]:
        if command.at is not None and command.at > self.clock():
            # Kept in SQLite: a reboot before the time does not lose it.
            self.library.schedule(command.id, command.at.timestamp(), command.model_dump_json())
            self._next_due = self._soonest_due()
            return {"scheduled": command.at.isoformat()}
        if self.in_quiet_hours():
            raise p.ProtocolError("quiet_hours", "it is quiet hours at the speaker; only the child can start a story")
        if command.story_id is not None:
            story = self.library.get(command.story_id)
            if story is None:
                raise p.ProtocolError("not_found", f"no story with id {command.story_id!r}")
        else:
            assert command.text is not None
            self._check_text(command.text, command.lang)
            self.voice_commands.check(command.voice)
            story_id = f"told-{command.id}"
            self.library.put_story(story_id, command.title, command.text, command.lang, command.voice)
            story = self.library.get(story_id)
            assert story is not None
        self._start(story, from_start=command.from_start, reason="replaced")
        return {"story_id": story.id, "state": self.state.value}

    def _settings_put(self, command: p.SettingsPut) -> dict[str, Any]:
        values = command.settings.model_dump(exclude_none=True, mode="json")
        if command.clear_quiet_hours:
            values["quiet_hours"] = None
        if "max_volume" in values and values["max_volume"] > self.limits.hard_max_volume:
            values["max_volume"] = self.limits.hard_max_volume
        self.library.put_settings(values)
        self.player.set_volume(min(self.volume, self.max_volume))
        self._enter(self.state)  # redraw the light (brightness) and publish the state
        return {"settings": {**self.library.settings()}}

    def _set_volume(self, volume: float) -> float:
        self.volume = min(volume, self.max_volume)
        self.library.put_settings({"volume": self.volume})
        applied = self.player.set_volume(self.volume)
        self._publish_state()
        return float(applied)

    # -- buttons -------------------------------------------------------------------

    def press(self, button: Button) -> None:
        """The child's buttons work in quiet hours too: a child may always ask."""
        if button is Button.HEART:
            self.publisher.event(p.ButtonHeart())
            return
        if button is Button.PLAY_PAUSE:
            if self.state is State.PLAYING:
                self._pause()
            elif self.state is State.PAUSED:
                self._resume()
            elif self.state is not State.RENDERING:
                story = self.library.newest_unheard() or self.library.last_told() or self.library.after(None)
                if story is not None:
                    self._start(story, from_start=False, reason="replaced")
        elif button is Button.NEXT:
            story = self.library.after(self.current.story.id if self.current else self._last_id())
            if story is not None:
                self._start(story, from_start=False, reason="next")
        elif button is Button.REPEAT:
            story = self.current.story if self.current else self.library.last_told()
            if story is not None:
                self._start(story, from_start=True, reason="replaced")

    def _last_id(self) -> str | None:
        last = self.library.last_told()
        return last.id if last else None

    # -- timers --------------------------------------------------------------------

    def tick(self) -> None:
        """Run what time decides: the sleep timer, and scheduled stories now due (one missed by
        more than an hour, e.g. while the speaker was off, is reported and not told). The daemon
        calls this on every turn of its loop, at least four times a second."""
        now = self.clock()
        if self._sleep_deadline and now >= self._sleep_deadline and self.state in (State.PLAYING, State.RENDERING):
            self._stop("sleep_timer")
            self._enter(State.SLEEPING)
        if self._next_due is None or self._next_due > now.timestamp():
            return
        for command_id, due, raw in self.library.scheduled():
            if due > now.timestamp():
                break
            self.library.unschedule(command_id)
            command = p.StoryTell.model_validate_json(raw)
            if now.timestamp() - due > MISSED_AFTER_SECONDS:
                message = f"scheduled story {command.id!r} was missed: the speaker was off at {command.at}"
                self.publisher.event(p.ErrorEvent(code="not_playing", message=message))
                continue
            try:
                self._story_tell(command.model_copy(update={"at": None}))
            except p.ProtocolError as exc:
                self.publisher.event(p.ErrorEvent(code=exc.code, message=f"scheduled story not told: {exc}"))
        self._next_due = self._soonest_due()

    def _soonest_due(self) -> float | None:
        pending = self.library.scheduled()
        return pending[0][1] if pending else None

    # -- playback ------------------------------------------------------------------

    def _start(self, story: Story, from_start: bool, reason: str) -> None:
        if self.current is not None:
            self._stop(reason)
        self._token += 1
        token = self._token
        start_at = 0.0 if from_start else story.position
        self.current = _Playing(story, token, position=start_at)
        minutes = self.sleep_timer_minutes
        self._sleep_deadline = None
        if minutes:
            from datetime import timedelta

            self._sleep_deadline = self.clock() + timedelta(minutes=minutes)
        self.library.mark_told(story.id)
        self._enter(State.RENDERING)
        self.player.play(
            self._watch(self.renderer.source(story), token),
            on_finished=lambda completed: self._post(PlaybackEnded(token, completed)),
            on_progress=lambda position: self._post(Progress(token, position)),
            start_at=start_at,
        )

    def _watch(self, chunks: Iterator[np.ndarray], token: int) -> Iterator[np.ndarray]:
        """Pass audio through; tell the controller when sound starts or synthesis fails."""
        try:
            first = True
            for chunk in chunks:
                if first:
                    self._post(AudioStarted(token))
                    first = False
                yield chunk
        except Exception as exc:  # noqa: BLE001 - reported to the controller, not the audio thread
            log.exception("story audio failed")
            self._post(SourceFailed(token, str(exc)))

    def _audio_started(self, playing: _Playing) -> None:
        if self.state is State.RENDERING:
            self._enter(State.PLAYING)
            self.publisher.event(
                p.StoryStarted(story_id=playing.story.id, title=playing.story.title, position=playing.position)
            )

    def _progress(self, playing: _Playing, position: float) -> None:
        playing.position = position
        self.library.set_position(playing.story.id, position)
        if self.state is not State.PLAYING:
            return
        if position - playing.last_progress_event >= self.limits.progress_interval:
            playing.last_progress_event = position
            self.publisher.event(p.StoryProgress(story_id=playing.story.id, position=position))
            self._publish_state()

    def _ended(self, playing: _Playing, completed: bool) -> None:
        self.current = None
        self._sleep_deadline = None
        if playing.failed:
            self.library.set_position(playing.story.id, playing.position)
            self.publisher.event(p.ErrorEvent(code="internal", message=f"could not tell the story: {playing.failed}"))
            self._enter(State.ERROR)
            return
        if completed:
            self.library.finished(playing.story.id)
            voice = playing.story.voice or self.library.settings().get(ACTIVE)
            if self.voices is not None and voice:
                self.voices.played(voice)  # the new pack has played: the one it replaced can go
            duration = self.renderer.duration(playing.story)
            if duration:
                self.library.set_duration(playing.story.id, duration)
            self.publisher.event(p.StoryFinished(story_id=playing.story.id, title=playing.story.title))
        self._enter(State.IDLE)

    def _pause(self) -> None:
        assert self.current is not None
        self.player.pause()
        self.current.position = self.player.position
        self.library.set_position(self.current.story.id, self.current.position)
        self._enter(State.PAUSED)

    def _resume(self) -> None:
        self.player.resume()
        self._enter(State.PLAYING)

    def _stop(self, reason: str) -> None:
        playing = self.current
        if playing is None:
            return
        self.current = None  # later callbacks of this token are stale
        self.player.stop()
        position = max(playing.position, self.player.position)
        self.library.set_position(playing.story.id, position)
        self.publisher.event(p.StoryStopped(story_id=playing.story.id, position=position, reason=reason))  # type: ignore[arg-type]
        self._enter(State.IDLE)

    def _rendered(self, story_id: str, duration: float) -> None:
        story = self.library.get(story_id)
        if story is None:
            return
        self.library.set_duration(story_id, duration)
        self.publisher.event(p.StoryReady(story_id=story_id, title=story.title, duration=duration))

    # -- state out -----------------------------------------------------------------

    def _enter(self, state: State) -> None:
        self.state = state
        light = {
            State.IDLE: Light.NEW_STORY if self.library.newest_unheard() else Light.READY,
            State.RENDERING: Light.PLAYING,
            State.PLAYING: Light.PLAYING,
            State.PAUSED: Light.READY,
            State.SLEEPING: Light.OFF,
            State.ERROR: Light.ERROR,
        }[state]
        self._light(light)
        self._publish_state()

    def announce(self) -> None:
        """Publish the state and set the light, as at start-up."""
        self._enter(self.state)

    def snapshot(self) -> p.DeviceState:
        """The state as published on the retained `state` topic."""
        playing = self.current
        return p.DeviceState(
            state=self.state.value,  # type: ignore[arg-type]
            story_id=playing.story.id if playing else None,
            title=playing.story.title if playing else None,
            position=round(playing.position, 2) if playing else 0.0,
            volume=self.volume,
            max_volume=self.max_volume,
            voice=playing.story.voice if playing else None,
            active_voice=self.voice_commands.active,
            quiet_hours=self.quiet_hours,
            versions=self.versions,
            updated_at=datetime.now(UTC),
        )

    def _publish_state(self) -> None:
        self.publisher.state(self.snapshot())

    def _info(self, story: Story) -> p.StoryInfo:
        return p.StoryInfo(
            story_id=story.id,
            title=story.title,
            lang=story.lang,
            position=story.position,
            duration=story.duration,
            ready=self.renderer.is_ready(story),
            times_finished=story.times_finished,
        )
