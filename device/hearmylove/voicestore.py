"""The speaker's voices: installed family packs first, the stock voices after.

Holds what the daemon needs around `voicepack`: the trusted studio keys, the base model
a pack must match, the speaker a pack's consent must name, and the rule that a replaced
pack is kept until a story in the new voice has played to the end (or the parent asks for
it back: `rollback`).

`install` is called from the daemon's pack worker while the loop and the renderer read
voices: the slow part (unpack, verify, fsync) runs unlocked in a hidden folder; only the
rename into place, and every read of the folder, take the lock.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Callable
from pathlib import Path

from . import voicepack
from .engine.vocoders import StudentBuild
from .engine.voices import Voice
from .errors import HearMyLoveError, VoicePackError

StockVoices = Callable[[str | None, str], Voice]


class VoiceStore:
    def __init__(
        self,
        folder: Path,
        trusted_keys: list[str],
        base_model_sha256: str,
        stock: StockVoices,
        device_id: str,
        student: StudentBuild | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._keys = [voicepack.load_public_key(k) for k in trusted_keys]
        self._base = base_model_sha256
        self._stock = stock
        self.device_id = device_id
        """A pack whose consent names another speaker is refused."""
        self._student = student
        """The built student vocoder: a pack with the parent's adapted vocoder is merged into it."""
        self._lock = threading.Lock()
        self._installing = threading.Lock()  # one install at a time: a sweep never hits another's files
        voicepack.sweep(self.folder)

    def resolve(self, voice_id: str | None, lang: str, active: str | None = None) -> Voice:
        """The story's own voice, else the family's active voice, else the stock default."""
        chosen = voice_id or active
        with self._lock:
            if chosen and chosen in voicepack.installed(self.folder):
                return voicepack.load_voice(self.folder, chosen)
        return self._stock(chosen, lang)

    def install(self, encoded: str) -> voicepack.PackManifest:
        """A pack sent over MQTT (base64 of the .tar): read from memory (no upload file to
        leave behind), verified, then swapped in atomically."""
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise VoicePackError("the voice pack is not valid base64; send the .tar file base64-encoded") from None
        with self._installing:
            try:
                incoming, manifest = voicepack.stage_pack(
                    data, self.folder, self._keys, self._base, self.device_id, self._student
                )
            except BaseException:
                with self._lock:
                    voicepack.sweep(self.folder)  # and whatever an earlier, killed install left behind
                raise
            with self._lock:
                voicepack.swap_in(incoming, manifest)
        return manifest

    def played(self, voice_id: str) -> None:
        """A story in this voice reached its end: the pack it replaced can go."""
        with self._lock:
            if voice_id in voicepack.installed(self.folder):
                voicepack.commit(self.folder, voice_id)

    def ids(self) -> list[str]:
        with self._lock:
            return voicepack.installed(self.folder)

    def manifests(self) -> list[tuple[voicepack.PackManifest, bool]]:
        """Each installed pack's manifest, and whether a previous version is kept for a rollback."""
        with self._lock:
            return [
                (voicepack.manifest_of(self.folder, voice_id), voicepack.has_previous(self.folder, voice_id))
                for voice_id in voicepack.installed(self.folder)
            ]

    def rollback(self, voice_id: str) -> voicepack.PackManifest | None:
        """Put back the pack this one replaced; None when none is kept (it has played since)."""
        with self._installing, self._lock:
            if not voicepack.rollback(self.folder, voice_id):
                return None
            return voicepack.manifest_of(self.folder, voice_id)

    def known(self, voice_id: str) -> bool:
        """An installed pack or one of the engine's stock voices: a story may be told in it."""
        if voice_id in self.ids():
            return True
        try:
            self._stock(voice_id, "en")
        except HearMyLoveError:
            return False
        return True
