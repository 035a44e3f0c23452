"""MQTT protocol v1: every command, reply, event and the retained state, as types.

Topics live under `hml/v1/<device_id>/`. Payloads are JSON validated here, at the edge;
the controller only ever sees these models. `parse_command` turns any bytes into a
command or a `ProtocolError` whose message names the problem (the reply the parent sees).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import HearMyLoveError

PROTOCOL_VERSION = 1
TOPIC_ROOT = f"hml/v{PROTOCOL_VERSION}"

ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,64}$"
MAX_MESSAGE_BYTES = 16 << 20
"""The largest command payload anywhere (a voice pack, base64 in JSON): the broker refuses
bigger ones (`message_size_limit`) and the speaker asks the broker never to send them."""
MAX_JSON_TOKENS = 100_000
"""Most JSON values (counted as `,` `[` `{`) a payload may hold: bounds the objects that
parsing creates, whatever the byte size (16 MiB of `[{},{},...]` would be 400 MB of dicts)."""
Id = Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)]
VOICE_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
"""A voice pack's id (its folder name on the speaker) or a stock voice's name."""
VoiceId = Annotated[str, Field(pattern=VOICE_ID_PATTERN)]
Lang = Literal["en", "zh", "auto"]
ErrorCode = Literal[
    "bad_json",
    "unknown_command",
    "invalid",
    "too_large",
    "expired",
    "retained",
    "not_found",
    "quiet_hours",
    "not_playing",
    "internal",
]
StateName = Literal["idle", "rendering", "playing", "paused", "sleeping", "error"]


def device_topic(device_id: str, *parts: str) -> str:
    """The topic `hml/v1/<device_id>/<parts...>`, e.g. device_topic("kid-001", "cmd", "ping")."""
    return "/".join((TOPIC_ROOT, device_id, *parts))


class ProtocolError(HearMyLoveError, ValueError):
    """A command the device refuses; becomes an `error` reply naming the problem."""

    def __init__(self, code: ErrorCode, message: str, command_id: str | None = None) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.command_id = command_id


# -- commands (parent -> device) -------------------------------------------------------


class Command(BaseModel):
    """Every command a parent sends: the payload on `cmd/<NAME>`. Unknown fields are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    NAME: ClassVar[str]

    id: Id
    """Chosen by the sender; a repeated id is answered again but never executed twice."""
    sent_at: datetime | None = None
    """When the sender sent it (ISO 8601 with a time zone). A command older than the
    speaker's validity (its session expiry) is refused, not executed. Optional in v1 for
    senders that predate it; the project's CLI and web app always send it."""

    @model_validator(mode="after")
    def _aware(self) -> Command:
        if self.sent_at is not None and self.sent_at.tzinfo is None:
            raise ValueError("sent_at must carry a time zone, e.g. 2026-11-21T19:30:00+00:00")
        return self


class StoryPut(Command):
    """Store a story on the speaker (replacing one with the same id, which starts over)."""

    NAME: ClassVar[str] = "story.put"
    story_id: Id
    title: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1)
    """The story; its length limit is the device's `limits.max_story_chars`."""
    lang: Lang = "auto"
    voice: VoiceId | None = None
    """A voice the speaker has (an installed pack or a stock voice); None tells it in the
    speaker's active voice, whichever that is when it is told."""


class StoryDelete(Command):
    """Delete a stored story (stopping it if it is playing)."""

    NAME: ClassVar[str] = "story.delete"
    story_id: Id


class StoryList(Command):
    """The stored stories, in the order the big button walks through them."""

    NAME: ClassVar[str] = "story.list"


class StoryTell(Command):
    """Tell a stored story, or an inline one, now or at a time."""

    NAME: ClassVar[str] = "story.tell"
    story_id: Id | None = None
    text: str | None = Field(None, min_length=1)
    title: str = Field("A story", min_length=1, max_length=200)
    lang: Lang = "auto"
    at: datetime | None = None
    """When to tell it (ISO 8601 with a time zone); absent means now."""
    from_start: bool = False
    """Start over instead of resuming where the child stopped."""
    voice: VoiceId | None = None
    """For an inline story: the voice to tell it in (as in `story.put`). A stored story
    keeps the voice it was put with."""

    @model_validator(mode="after")
    def _one_source(self) -> StoryTell:
        if (self.story_id is None) == (self.text is None):
            raise ValueError("give exactly one of story_id (a stored story) or text (an inline story)")
        if self.voice is not None and self.story_id is not None:
            raise ValueError("voice goes with text; a stored story keeps the voice it was put with (story.put)")
        if self.at is not None and self.at.tzinfo is None:
            raise ValueError("at must carry a time zone, e.g. 2026-11-21T19:30:00+08:00")
        return self


class PlaybackPause(Command):
    """Pause the story playing (fades out; the position is kept)."""

    NAME: ClassVar[str] = "playback.pause"


class PlaybackResume(Command):
    """Resume the paused story where it stopped."""

    NAME: ClassVar[str] = "playback.resume"


class PlaybackStop(Command):
    """Stop the story playing; the position is kept for next time."""

    NAME: ClassVar[str] = "playback.stop"


class PlaybackNext(Command):
    """Tell the next stored story, as holding the big button does."""

    NAME: ClassVar[str] = "playback.next"


class VolumeSet(Command):
    """Set the volume, 0..1; never above the speaker's maximum volume."""

    NAME: ClassVar[str] = "volume.set"
    volume: float = Field(ge=0.0, le=1.0)


class QuietHours(BaseModel):
    """Local times between which parents' tells are refused (the child's buttons still work);
    `end` before `start` spans midnight, e.g. 20:30 to 07:00."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    start: time
    end: time

    def contains(self, moment: time) -> bool:
        """Whether `moment` (a local time without zone) is inside: from `start` up to, not including, `end`."""
        if self.start <= self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end  # spans midnight


class Settings(BaseModel):
    """What a parent may change remotely; None in a `settings.put` leaves a value as it is."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    max_volume: float | None = Field(None, ge=0.0, le=1.0)
    quiet_hours: QuietHours | None = None
    sleep_timer_minutes: int | None = Field(None, ge=0, le=240)
    """Stop playing this many minutes after the child started (0: never)."""
    led_brightness: float | None = Field(None, ge=0.0, le=1.0)


class SettingsPut(Command):
    """Change the parents' settings; `clear_quiet_hours` switches quiet hours off."""

    NAME: ClassVar[str] = "settings.put"
    settings: Settings
    clear_quiet_hours: bool = False


class VoiceInstall(Command):
    """A signed voice pack from the studio (the family's cloned voice)."""

    NAME: ClassVar[str] = "voice.install"
    pack: str = Field(min_length=1)
    """The pack's .tar, base64-encoded."""
    activate: bool = True
    """Tell every story without its own voice in this one from now on."""


class VoiceList(Command):
    """The installed voice packs, with their consent, and the active one."""

    NAME: ClassVar[str] = "voice.list"


class VoiceSelect(Command):
    """Choose the voice for every story without its own."""

    NAME: ClassVar[str] = "voice.select"
    voice: VoiceId | None
    """An installed pack or a stock voice; null: the speaker's own default voice."""


class VoiceRollback(Command):
    """Go back to the pack a new version of this voice replaced (kept until the new one has
    played a story to the end)."""

    NAME: ClassVar[str] = "voice.rollback"
    voice_id: VoiceId | None = None
    """Which voice; absent: the active one."""


class Ping(Command):
    """Is the speaker there? Replies with its state and voices."""

    NAME: ClassVar[str] = "ping"


COMMANDS: dict[str, type[Command]] = {
    c.NAME: c
    for c in (
        StoryPut,
        StoryDelete,
        StoryList,
        StoryTell,
        PlaybackPause,
        PlaybackResume,
        PlaybackStop,
        PlaybackNext,
        VolumeSet,
        SettingsPut,
        VoiceInstall,
        VoiceList,
        VoiceSelect,
        VoiceRollback,
        Ping,
    )
}


def valid_id(value: object) -> bool:
    """Only such an id may name a reply topic (no MQTT wildcards, no extra levels)."""
    return isinstance(value, str) and re.fullmatch(ID_PATTERN, value) is not None


_LEADING_ID = re.compile(rb'^\s*\{\s*"id"\s*:\s*"([A-Za-z0-9_.:\-]{1,64})"')


def sniff_id(payload: bytes) -> str | None:
    """The command id from a payload's first key, without parsing the rest: a payload too
    big, too deep or not JSON still gets its refusal on reply/<id>. Our senders put `id` first."""
    found = _LEADING_ID.match(payload[:256])
    return found.group(1).decode() if found else None


def _command_id(data: object) -> str | None:
    if isinstance(data, dict) and valid_id(data.get("id")):
        return str(data["id"])
    return None


def _describe(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        problems.append(f"{where}: {err['msg']}")
    return "; ".join(problems)


def byte_limit(name: str, max_bytes: int) -> int:
    """A voice pack may use the whole message budget; every other command the configured one."""
    return MAX_MESSAGE_BYTES if name == VoiceInstall.NAME else min(max_bytes, MAX_MESSAGE_BYTES)


def _load_json(payload: bytes, command_id: str | None) -> object:
    """json.loads with the failures hostile payloads provoke named, never `internal`."""
    tokens = payload.count(b",") + payload.count(b"[") + payload.count(b"{")
    if tokens > MAX_JSON_TOKENS:
        raise ProtocolError(
            "too_large", f"payload holds {tokens:,} JSON values; the limit is {MAX_JSON_TOKENS:,}", command_id
        )
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError("bad_json", f"payload is not JSON: {exc}", command_id) from None
    except RecursionError:
        raise ProtocolError("bad_json", "payload nests JSON arrays or objects too deeply", command_id) from None
    except ValueError as exc:  # Python's limit on integer digits (4,300)
        raise ProtocolError("bad_json", f"payload holds a number too long to read: {exc}", command_id) from None


def parse_command(name: str, payload: bytes, max_bytes: int) -> Command:
    """Bytes from `cmd/<name>` -> a command, or a ProtocolError naming what is wrong."""
    limit = byte_limit(name, max_bytes)
    if len(payload) > limit:
        raise ProtocolError(
            "too_large", f"payload is {len(payload):,} bytes; the limit is {limit:,}", sniff_id(payload)
        )
    data = _load_json(payload, sniff_id(payload))
    command_id = _command_id(data)
    kind = COMMANDS.get(name)
    if kind is None:
        raise ProtocolError("unknown_command", f"unknown command {name!r}; known: {', '.join(COMMANDS)}", command_id)
    if not isinstance(data, dict):
        raise ProtocolError("invalid", f"payload must be a JSON object, got {type(data).__name__}", command_id)
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        raise ProtocolError("invalid", f"{name}: {_describe(exc)}", command_id) from None


def check_fresh(command: Command, now: datetime, max_age: timedelta) -> None:
    """Refuse a command older than its validity: a stale or replayed one must not run."""
    if command.sent_at is None:
        return
    age = now - command.sent_at
    if age > max_age:
        raise ProtocolError(
            "expired",
            f"{command.NAME} was sent at {command.sent_at.isoformat()}, {age} ago; "
            f"commands older than {max_age} are refused (is the sender's clock right?)",
            command.id,
        )


# -- replies, events, state (device -> parent) ----------------------------------------


class ErrorInfo(BaseModel):
    """Why a command was refused: a stable `code` for programs, a `message` for people."""

    code: ErrorCode
    message: str


class Reply(BaseModel):
    """The answer to one command, on `reply/<id>` (or the MQTT 5 response topic)."""

    id: str | None
    ok: bool
    result: dict[str, Any] = Field(default_factory=dict)
    error: ErrorInfo | None = None

    @classmethod
    def failure(cls, code: ErrorCode, message: str, command_id: str | None = None) -> Reply:
        """A refusal with this code and message."""
        return cls(id=command_id, ok=False, error=ErrorInfo(code=code, message=message))


def _now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Every event the speaker publishes on `event/<NAME>`, stamped with when it happened."""

    NAME: ClassVar[str]
    at: datetime = Field(default_factory=_now)


class StoryReady(Event):
    """A story arrived and is rendered: pressing the button plays it at once."""

    NAME: ClassVar[str] = "story.ready"
    story_id: str
    title: str
    duration: float


class StoryStarted(Event):
    """The child hears a story now, from `position` seconds."""

    NAME: ClassVar[str] = "story.started"
    story_id: str
    title: str
    position: float


class StoryProgress(Event):
    """How far the story playing has got (every `progress_interval` seconds of story)."""

    NAME: ClassVar[str] = "story.progress"
    story_id: str
    position: float


class StoryFinished(Event):
    """The child listened to the end."""

    NAME: ClassVar[str] = "story.finished"
    story_id: str
    title: str


class StoryStopped(Event):
    """A story ended before its end, at `position` seconds, and why."""

    NAME: ClassVar[str] = "story.stopped"
    story_id: str
    position: float
    reason: Literal["stopped", "next", "replaced", "sleep_timer", "error"]


class ButtonHeart(Event):
    """The child pressed the heart: someone is thinking of the parent."""

    NAME: ClassVar[str] = "button.heart"


class ErrorEvent(Event):
    """Something went wrong that no reply can carry: a scheduled story failed, or a
    command without a readable id (or with an unusable response topic) was refused."""

    NAME: ClassVar[str] = "error"
    code: ErrorCode
    message: str
    command: str | None = None
    """The command's name when the error answers a command."""
    id: str | None = None
    """The command's id when it could be read."""


class StoryInfo(BaseModel):
    """A stored story as `story.list` shows it; `ready` when its audio is rendered."""

    story_id: str
    title: str
    lang: str
    position: float
    duration: float | None
    ready: bool
    times_finished: int


class VoiceInfo(BaseModel):
    """An installed voice pack as the parent sees it: whose voice, given when, for which speaker."""

    voice_id: str
    display_name: str
    languages: list[str]
    recorded_by: str
    recorded_at: datetime
    device_id: str
    """The speaker the consent names (always this one: a pack for another is refused)."""
    statement: str
    """The consent text, word for word."""
    active: bool
    """Stories without their own voice are told in it."""
    previous: bool
    """An older version of this pack is kept: `voice.rollback` brings it back."""


class DeviceState(BaseModel):
    """Retained on `state`: what a parent's app shows when it opens."""

    state: StateName
    story_id: str | None = None
    title: str | None = None
    position: float = 0.0
    volume: float
    max_volume: float
    voice: str | None = None
    """The voice of the story playing, if it has its own."""
    active_voice: str | None = None
    """The voice for stories without their own (None: the speaker's stock voice)."""
    quiet_hours: QuietHours | None = None
    versions: dict[str, str]
    updated_at: datetime = Field(default_factory=_now)


def json_schema() -> dict[str, Any]:
    """JSON Schema of every command payload and event, for the web app."""
    return {
        "protocol_version": PROTOCOL_VERSION,
        "commands": {name: kind.model_json_schema() for name, kind in COMMANDS.items()},
        "events": {
            e.NAME: e.model_json_schema()
            for e in (StoryReady, StoryStarted, StoryProgress, StoryFinished, StoryStopped, ButtonHeart, ErrorEvent)
        },
        "reply": Reply.model_json_schema(),
        "voice": VoiceInfo.model_json_schema(),
        "state": DeviceState.model_json_schema(),
    }
