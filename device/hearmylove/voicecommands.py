"""The parent's voice commands: install a pack, list the voices, choose the active one, and
go back to the pack a new version replaced.

Kept out of the controller (its state machine has nothing to do with voices): the controller
hands these commands here and publishes the state when told the voices changed.
`voice.install` and `voice.rollback` run on the daemon's pack worker, the rest on the loop;
everything here touches only the library, the voice store and the renderer's queue, which
are all thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from . import protocol as p

if TYPE_CHECKING:  # the core imports no crypto or NumPy for a type
    from .library import Library
    from .voicepack import PackManifest

ACTIVE = "voice"
"""The library setting that holds the active voice (absent or None: the stock voice)."""


class VoicesPort(Protocol):
    """The speaker's voice store, as the voice commands use it (`voicestore.VoiceStore`)."""

    def install(self, encoded: str) -> PackManifest:
        """Verify and install a base64 voice pack; raise a HearMyLoveError naming the problem."""
        ...

    def played(self, voice_id: str) -> None:
        """A story in this voice reached its end: the pack it replaced can go."""
        ...

    def ids(self) -> list[str]:
        """The installed packs' voice ids."""
        ...

    def manifests(self) -> list[tuple[PackManifest, bool]]:
        """Each installed pack's manifest, and whether a previous version is kept for a rollback."""
        ...

    def rollback(self, voice_id: str) -> PackManifest | None:
        """Put back the pack this one replaced; None when none is kept."""
        ...

    def known(self, voice_id: str) -> bool:
        """An installed pack or a stock voice: a story may be told in it."""
        ...


class Prerender(Protocol):
    """What the voice commands need of the renderer: render a story again in its new voice."""

    def prerender(self, story: Any) -> None:
        """Queue the story for rendering ahead."""
        ...


def info(manifest: PackManifest, active: bool, previous: bool) -> p.VoiceInfo:
    """A pack as the parent sees it (`voice.list`, `voice.install`): whose voice, the consent, its status."""
    consent = manifest.consent
    return p.VoiceInfo(
        voice_id=manifest.voice_id,
        display_name=manifest.display_name,
        languages=list(manifest.languages),
        recorded_by=consent.recorded_by,
        recorded_at=consent.recorded_at,
        device_id=consent.device_id,
        statement=consent.statement,
        active=active,
        previous=previous,
    )


class VoiceCommands:
    """The controller's voice commands: install a pack, list, choose, roll back.

    Stories told in a voice that changed are rendered again. A speaker without a voice
    store (`voices` None) refuses every command that needs a pack with an `invalid` error.
    """

    def __init__(
        self, library: Library, renderer: Prerender, voices: VoicesPort | None, changed: Callable[[], None]
    ) -> None:
        self.library = library
        self.renderer = renderer
        self.voices = voices
        self._changed = changed
        """Called after the active voice or a pack changed: the retained state is published again."""

    def handlers(self) -> dict[type[p.Command], Callable[[Any], dict[str, Any]]]:
        """The handler of each voice command, for the controller's command table."""
        return {
            p.VoiceInstall: self.install,
            p.VoiceList: self.list_voices,
            p.VoiceSelect: self.select,
            p.VoiceRollback: self.rollback,
        }

    @property
    def active(self) -> str | None:
        """The voice for stories without their own; None: the speaker's stock voice."""
        value = self.library.settings().get(ACTIVE)
        return str(value) if value else None

    def _store(self) -> VoicesPort:
        if self.voices is None:
            raise p.ProtocolError("invalid", "this speaker takes no voice packs (no voice store configured)")
        return self.voices

    def check(self, voice: str | None) -> None:
        """Refuse a story's voice the speaker cannot tell it in, now rather than when it renders."""
        if voice is not None and not self._store().known(voice):
            raise p.ProtocolError(
                "not_found", f"no voice {voice!r} on this speaker; installed packs: {self._store().ids() or 'none'}"
            )

    def _render_again(self, voice_id: str | None) -> None:
        """Stories told in this voice (their own, or the active one) are rendered ahead again."""
        active = self.active
        for story in self.library.stories():
            if (story.voice or active) == voice_id:
                self.renderer.prerender(story)

    def install(self, command: p.VoiceInstall) -> dict[str, Any]:
        """`voice.install`: verify and install the pack (and make it active if asked).
        Raises a HearMyLoveError naming what is wrong with the pack."""
        manifest = self._store().install(command.pack)
        if command.activate:
            self.library.put_settings({ACTIVE: manifest.voice_id})
        self._render_again(manifest.voice_id)
        self._changed()
        previous = any(m.voice_id == manifest.voice_id and kept for m, kept in self._store().manifests())
        return info(manifest, self.active == manifest.voice_id, previous).model_dump(mode="json")

    def list_voices(self, command: p.VoiceList) -> dict[str, Any]:
        """`voice.list`: the installed packs and the active voice."""
        active = self.active
        voices = [info(m, m.voice_id == active, kept).model_dump(mode="json") for m, kept in self._store().manifests()]
        return {"voices": voices, "active_voice": active}

    def select(self, command: p.VoiceSelect) -> dict[str, Any]:
        """`voice.select`: the voice for stories without their own. Raises ProtocolError for an unknown voice."""
        self.check(command.voice)
        self.library.put_settings({ACTIVE: command.voice})
        self._render_again(command.voice)
        self._changed()
        return {"active_voice": command.voice}

    def rollback(self, command: p.VoiceRollback) -> dict[str, Any]:
        """`voice.rollback`: the previous version of a pack back. Raises ProtocolError when none is kept."""
        voice_id = command.voice_id or self.active
        if voice_id is None:
            raise p.ProtocolError("not_found", "no voice pack is active; name the voice to roll back")
        manifest = self._store().rollback(voice_id)
        if manifest is None:
            raise p.ProtocolError(
                "not_found",
                f"no earlier version of voice {voice_id!r} is kept (one is kept only until the new version "
                "has told a story to the end); install the earlier pack again instead",
            )
        self._render_again(voice_id)
        self._changed()
        return info(manifest, self.active == voice_id, previous=False).model_dump(mode="json")
