"""A power cut mid-render: the render-ahead queue lived in memory, the stories in SQLite.
After the restart every stored story without a render is rendered again, unasked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hearmylove.broker import Account, LocalBroker
from hearmylove.remote import Remote

from .rigs import Speaker

DEVICE, PARENT = "kid-001", "mum"
STORIES = {
    f"tale-{n}": " ".join(
        [f"Story number {n} begins by the river.", "The little duck swam slowly past the old mill."] * 3
    )
    for n in range(3)
}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    accounts = [Account(DEVICE, "device-secret"), Account(PARENT, "parent-secret", devices=(DEVICE,))]
    with LocalBroker(tmp_path / "broker", accounts) as running:
        yield running


def online(remote: Remote) -> None:
    while remote.wait_for("availability", timeout=120, device_id=DEVICE).payload != "online":
        pass


def not_ready(mum: Remote) -> set[str]:
    listing = mum.send(DEVICE, "story.list", timeout=60)
    return {s["story_id"] for s in listing.result["stories"] if not s["ready"]}


def test_renders_cut_off_by_a_power_cut_are_resumed_at_restart(
    tmp_path: Path, broker: LocalBroker, model_dir: Path
) -> None:
    speaker = Speaker(tmp_path, broker)
    speaker.start()
    try:
        with Remote("127.0.0.1", broker.port, PARENT, "parent-secret").connect() as mum:
            online(mum)
            for story_id, text in STORIES.items():
                assert mum.send(DEVICE, "story.put", story_id=story_id, title=story_id, text=text, lang="en").ok
            assert speaker.process is not None
            speaker.process.kill()  # the power cut: no clean shutdown, the render queue is gone
            speaker.process.wait(timeout=30)

            speaker.start()
            online(mum)
            missing = not_ready(mum)
            assert missing, "the cut came after every render had finished: nothing to resume"
            while missing:  # story.ready is sent once each render is written to the cache
                ready = mum.wait_for("event", "story.ready", timeout=300)
                missing.discard(ready.payload["story_id"])
            assert not_ready(mum) == set()
    finally:
        speaker.stop()
