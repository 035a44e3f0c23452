"""Protocol v1 at the edge: any bytes become a command or an error that names the problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hearmylove import protocol as p

pytestmark = pytest.mark.fast


def parse(name: str, payload: object, max_bytes: int = 10_000) -> p.Command:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return p.parse_command(name, raw, max_bytes)


def test_a_story_put_parses_into_its_model() -> None:
    command = parse("story.put", {"id": "c1", "story_id": "fox", "title": "The Fox", "text": "Once.", "lang": "en"})
    assert isinstance(command, p.StoryPut) and command.story_id == "fox" and command.lang == "en"


@pytest.mark.parametrize(
    ("name", "payload", "code", "words"),
    [
        ("story.put", b"{not json", "bad_json", "not JSON"),
        ("story.put", b"\xff\xfe", "bad_json", "not JSON"),
        ("story.dance", {"id": "c1"}, "unknown_command", "unknown command 'story.dance'"),
        ("story.put", [1, 2], "invalid", "must be a JSON object"),
        ("story.put", {"id": "c1", "story_id": "fox", "title": "t"}, "invalid", "text: Field required"),
        ("volume.set", {"id": "c1", "volume": "loud"}, "invalid", "volume: Input should be a valid number"),
        ("volume.set", {"id": "c1", "volume": 3}, "invalid", "less than or equal to 1"),
        ("story.tell", {"id": "c1"}, "invalid", "exactly one of story_id"),
        ("story.tell", {"id": "c1", "story_id": "a", "at": "2026-11-21T19:30:00"}, "invalid", "time zone"),
        ("ping", {"id": "c1", "extra": 1}, "invalid", "extra: Extra inputs are not permitted"),
        ("ping", {"id": "has space"}, "invalid", "id: String should match pattern"),
        ("ping", {}, "invalid", "id: Field required"),
    ],
)
def test_bad_commands_are_refused_with_a_named_problem(name: str, payload: object, code: str, words: str) -> None:
    with pytest.raises(p.ProtocolError) as caught:
        parse(name, payload)
    assert caught.value.code == code
    assert words in str(caught.value)


def test_the_id_of_a_bad_command_is_kept_for_the_reply() -> None:
    with pytest.raises(p.ProtocolError) as caught:
        parse("volume.set", {"id": "c42", "volume": "loud"})
    assert caught.value.command_id == "c42"


def test_oversize_payloads_are_refused_before_parsing() -> None:
    with pytest.raises(p.ProtocolError, match="20,000 bytes; the limit is 10,000") as caught:
        p.parse_command("story.put", b"x" * 20_000, 10_000)
    assert caught.value.code == "too_large"


def test_quiet_hours_can_span_midnight() -> None:
    from datetime import time

    night = p.QuietHours(start=time(20, 30), end=time(7, 0))
    assert night.contains(time(23, 0)) and night.contains(time(6, 59)) and not night.contains(time(12, 0))
    nap = p.QuietHours(start=time(13, 0), end=time(15, 0))
    assert nap.contains(time(14, 0)) and not nap.contains(time(16, 0))


def test_the_json_schema_covers_every_command_and_event() -> None:
    schema = p.json_schema()
    assert set(schema["commands"]) == set(p.COMMANDS)
    assert "story.finished" in schema["events"] and "button.heart" in schema["events"]
    assert schema["commands"]["volume.set"]["properties"]["volume"]["maximum"] == 1.0


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from([*p.COMMANDS, "bogus", ""]),
    payload=st.one_of(st.binary(max_size=200), _json.map(lambda v: json.dumps(v).encode())),
)
def test_fuzzed_payloads_give_a_command_or_a_protocol_error(name: str, payload: bytes) -> None:
    try:
        command = p.parse_command(name, payload, 1000)
    except p.ProtocolError as exc:
        assert exc.code in ("bad_json", "unknown_command", "invalid", "too_large") and str(exc)
    else:
        assert command.NAME == name


def test_the_committed_schema_for_the_web_app_is_current() -> None:
    committed = Path(__file__).resolve().parents[1] / "docs" / "protocol.schema.json"
    assert json.loads(committed.read_text()) == json.loads(json.dumps(p.json_schema())), (
        "the protocol changed: run `hearmylove schema > docs/protocol.schema.json`"
    )


@pytest.mark.parametrize("bad_id", ["+", "#", "a/b", "", "x" * 65, 7])
def test_an_id_that_cannot_name_a_reply_topic_is_not_kept(bad_id: object) -> None:
    with pytest.raises(p.ProtocolError) as caught:
        parse("story.put", {"id": bad_id})
    assert caught.value.command_id is None  # the error goes to event/error, not reply/<id>
