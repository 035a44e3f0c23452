"""The state machine as a family lives with it: stories arrive, get told, paused, resumed."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from hearmylove import protocol as p
from hearmylove.controller import Controller, Limits, State
from hearmylove.library import Library
from hearmylove.messages import Button, Light, Pressed

from .fakes import FakePlayer, FakeRenderer, RecordingPublisher

pytestmark = pytest.mark.fast


class Rig:
    def __init__(self, tmp_path: Path, **limits: object) -> None:
        self.now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
        self.inbox: list[object] = []
        self.lights: list[Light] = []
        self.player = FakePlayer()
        self.renderer = FakeRenderer()
        self.publisher = RecordingPublisher()
        self.library = Library(tmp_path / "lib.sqlite3")
        self.c = Controller(
            self.library,
            self.renderer,
            self.player,
            self.publisher,
            self.lights.append,
            self.inbox.append,
            limits=Limits(**limits),
            clock=lambda: self.now,  # type: ignore[arg-type]
        )
        self.n = 0

    def send(self, command: type[p.Command], **fields: object) -> p.Reply:
        self.n += 1
        return self.c.handle(command(id=f"c{self.n}", **fields))

    def drain(self) -> None:
        while self.inbox:
            self.c.dispatch(self.inbox.pop(0))

    def play_out(self) -> None:
        self.player.pump()
        self.drain()


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def test_a_story_arrives_is_told_and_the_parent_learns_it_was_heard(rig: Rig) -> None:
    reply = rig.send(p.StoryPut, story_id="fox", title="Fox", text="Once upon a time.")
    assert reply.ok and reply.result == {"story_id": "fox", "new": True}
    assert rig.renderer.prerendered == ["fox"] and "chime" in rig.player.calls
    assert rig.lights[-1] is Light.NEW_STORY
    assert rig.send(p.StoryTell, story_id="fox").ok
    assert rig.c.state is State.RENDERING
    rig.play_out()
    assert rig.publisher.names() == ["story.started", "story.finished"]
    assert rig.c.state is State.IDLE and rig.lights[-1] is Light.READY
    assert rig.library.get("fox").times_finished == 1  # type: ignore[union-attr]


def test_a_repeated_command_id_is_answered_but_runs_once(rig: Rig) -> None:
    rig.send(p.StoryPut, story_id="fox", title="Fox", text="Once.")
    first = rig.c.handle(p.StoryTell(id="tell-1", story_id="fox"))
    again = rig.c.handle(p.StoryTell(id="tell-1", story_id="fox"))
    assert first.ok and again.ok and again.result.get("duplicate") is True
    assert rig.player.calls.count("play") == 1


def test_press_pauses_and_resumes_where_it_was(rig: Rig) -> None:
    rig.send(p.StoryPut, story_id="fox", title="Fox", text="Once.")
    rig.c.press(Button.PLAY_PAUSE)  # idle: plays the newest unheard story
    rig.player.pull_one()
    rig.drain()
    assert rig.c.state is State.PLAYING
    rig.player.position = 3.5
    rig.c.press(Button.PLAY_PAUSE)
    assert rig.c.state is State.PAUSED and rig.library.get("fox").position == 3.5  # type: ignore[union-attr]
    rig.c.press(Button.PLAY_PAUSE)
    assert rig.c.state is State.PLAYING and rig.player.calls[-1] == "resume"


def test_a_stopped_story_resumes_where_the_child_stopped(rig: Rig) -> None:
    rig.send(p.StoryPut, story_id="fox", title="Fox", text="Once.")
    rig.send(p.StoryTell, story_id="fox")
    rig.player.position = 7.0
    assert rig.send(p.PlaybackStop).ok
    assert rig.publisher.events[-1] == p.StoryStopped(
        story_id="fox", position=7.0, reason="stopped", at=rig.publisher.events[-1].at
    )
    rig.send(p.StoryTell, story_id="fox")
    assert rig.player.start_at == 7.0
    rig.send(p.StoryTell, story_id="fox", from_start=True)
    assert rig.player.start_at == 0.0


def test_hold_goes_to_the_next_story_and_double_press_repeats(rig: Rig) -> None:
    for sid in ("a", "b", "c"):
        rig.send(p.StoryPut, story_id=sid, title=sid.upper(), text="Once.")
    rig.send(p.StoryTell, story_id="a")
    rig.c.press(Button.NEXT)
    assert rig.c.current is not None and rig.c.current.story.id == "b"
    rig.player.position = 2.0
    rig.c.press(Button.REPEAT)
    assert rig.c.current.story.id == "b" and rig.player.start_at == 0.0
    assert "next" in [e.reason for e in rig.publisher.events if isinstance(e, p.StoryStopped)]


def test_heart_tells_the_parent(rig: Rig) -> None:
    rig.c.dispatch(Pressed(Button.HEART))
    assert rig.publisher.names() == ["button.heart"]


def test_quiet_hours_refuse_the_parent_but_not_the_child(tmp_path: Path) -> None:
    rig = Rig(tmp_path, default_quiet_hours=p.QuietHours(start=time(11, 0), end=time(13, 0)))
    rig.send(p.StoryPut, story_id="fox", title="Fox", text="Once.")
    assert "chime" not in rig.player.calls
    reply = rig.send(p.StoryTell, story_id="fox")
    assert not reply.ok and reply.error.code == "quiet_hours"  # type: ignore[union-attr]
    rig.c.press(Button.PLAY_PAUSE)
    assert rig.c.state is State.RENDERING


def test_settings_cap_the_volume_and_clear_quiet_hours(tmp_path: Path) -> None:
    rig = Rig(tmp_path, hard_max_volume=0.8)
    rig.send(p.SettingsPut, settings=p.Settings(max_volume=0.95))
    assert rig.c.max_volume == 0.8
    assert rig.send(p.VolumeSet, volume=1.0).result == {"volume": 0.8}
    rig.send(p.SettingsPut, settings=p.Settings(max_volume=0.4))
    assert rig.player.volume == 0.4
    rig.send(p.SettingsPut, settings=p.Settings(quiet_hours=p.QuietHours(start=time(0), end=time(23, 59))))
    assert rig.c.in_quiet_hours()
    rig.send(p.SettingsPut, settings=p.Settings(), clear_quiet_hours=True)
    assert not rig.c.in_quiet_hours()


def test_the_sleep_timer_stops_playback_and_sleeps(rig: Rig) -> None:
    rig.send(p.SettingsPut, settings=p.Settings(sleep_timer_minutes=10))
    rig.send(p.StoryPut, story_id="fox", title="Fox", text="Once.")
    rig.send(p.StoryTell, story_id="fox")
    rig.now += timedelta(minutes=11)
    rig.c.tick()
    assert rig.c.state is State.SLEEPING and rig.lights[-1] is Light.OFF
    assert rig.publisher.events[-1].reason == "sleep_timer"  # type: ignore[attr-defined]


def test_a_scheduled_tell_happens_at_its_time(rig: Rig) -> None:
    rig.send(p.StoryPut, story_id="fox", title="Fox", text="Once.")
    reply = rig.send(p.StoryTell, story_id="fox", at=rig.now + timedelta(minutes=5))
    assert reply.ok and "scheduled" in reply.result and rig.c.state is State.IDLE
    rig.c.tick()
    assert rig.c.state is State.IDLE
    rig.now += timedelta(minutes=6)
    rig.c.tick()
    assert rig.c.state is State.RENDERING


def test_a_scheduled_tell_survives_a_restart(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.send(p.StoryPut, story_id="fox", title="Fox", text="Once.")
    rig.send(p.StoryTell, story_id="fox", at=rig.now + timedelta(hours=2))
    rebooted = Rig(tmp_path)  # same SQLite file, a new controller
    rebooted.now = rig.now + timedelta(hours=3)
    rebooted.c.tick()
    assert rebooted.c.state is State.RENDERING and rebooted.c.current.story.id == "fox"  # type: ignore[union-attr]
    rebooted.c.tick()
    assert rebooted.library.scheduled() == []


def test_a_scheduled_tell_missed_by_hours_is_reported_not_told(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.send(p.StoryPut, story_id="fox", title="Fox", text="Once.")
    rig.send(p.StoryTell, story_id="fox", at=rig.now + timedelta(minutes=1))
    rig.now += timedelta(hours=5)
    rig.c.tick()
    assert rig.c.state is State.IDLE and "was missed" in rig.publisher.events[-1].message  # type: ignore[attr-defined]


def test_inline_story_oversize_and_unknown_ids_get_clear_errors(tmp_path: Path) -> None:
    rig = Rig(tmp_path, max_story_chars=100)
    reply = rig.send(p.StoryTell, text="x" * 101)
    assert reply.error.code == "too_large" and "the limit is 100" in reply.error.message  # type: ignore[union-attr]
    assert rig.send(p.StoryTell, story_id="ghost").error.code == "not_found"  # type: ignore[union-attr]
    assert rig.send(p.StoryDelete, story_id="ghost").error.code == "not_found"  # type: ignore[union-attr]
    assert rig.send(p.PlaybackPause).error.code == "not_playing"  # type: ignore[union-attr]
    assert rig.send(p.StoryPut, story_id="e", title="E", text=" ").error.code == "invalid"  # type: ignore[union-attr]
    assert rig.send(p.StoryTell, text="Short.").ok


def test_a_synthesis_failure_becomes_an_error_state_and_event(rig: Rig) -> None:
    rig.send(p.StoryPut, story_id="bad", title="Bad", text="BROKEN story.")
    rig.send(p.StoryTell, story_id="bad")
    rig.play_out()
    assert rig.c.state is State.ERROR and rig.lights[-1] is Light.ERROR
    assert rig.publisher.events[-1].code == "internal"  # type: ignore[attr-defined]
    rig.send(p.StoryPut, story_id="ok", title="OK", text="Fine.")
    rig.send(p.StoryTell, story_id="ok")
    rig.play_out()
    assert rig.c.state is State.IDLE, "the next story recovers from the error"


def test_story_list_reports_progress_and_readiness(rig: Rig) -> None:
    rig.send(p.StoryPut, story_id="fox", title="Fox", text="Once.")
    stories = rig.send(p.StoryList).result["stories"]
    assert stories == [
        {
            "story_id": "fox",
            "title": "Fox",
            "lang": "auto",
            "position": 0.0,
            "duration": None,
            "ready": True,
            "times_finished": 0,
        }
    ]


def test_state_snapshots_follow_the_story(rig: Rig) -> None:
    rig.send(p.StoryPut, story_id="fox", title="Fox", text="Once.")
    rig.send(p.StoryTell, story_id="fox")
    rig.player.pull_one()
    rig.drain()
    assert rig.publisher.states[-1].state == "playing" and rig.publisher.states[-1].story_id == "fox"
