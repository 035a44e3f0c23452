"""A technician's upload, checked before anything is queued.

Minutes of a worker are wasted and a family waits for nothing if a clone starts on a file
that is not audio, too little speech, two people talking, or a voice without consent; so
the web API runs the same enrollment checks `voicelab clone` starts with (readable audio,
enough speech, one speaker, not clipped or noisy) and refuses with every problem named.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from hearmylove.errors import RecordingError
from hearmylove.protocol import ID_PATTERN, VOICE_ID_PATTERN
from hearmylove.voicepack import Consent

from ..encoder import SpeakerEncoder
from ..enroll import enroll

MAX_RECORDINGS = 60


class UploadError(RecordingError):
    """An upload refused before queueing; the message says what to change."""


class CloneRequest(BaseModel):
    """The form's fields, apart from the recordings themselves."""

    speaker_id: str = Field(pattern=ID_PATTERN)
    """The family's speaker (device id): the pack is bound to it."""
    voice_id: str = Field(pattern=VOICE_ID_PATTERN)
    display_name: str = Field(min_length=1, max_length=80)
    lang: Literal["en", "zh"] = "en"
    recorded_by: str = Field(min_length=1, max_length=200)
    recorded_at: datetime | None = None
    statement: str = Field(min_length=1, max_length=2000)
    """The consent text the parent agreed to, word for word."""
    consent: bool
    """The technician confirms the parent agreed (the signed form is on file)."""
    budget_minutes: float = Field(gt=0)
    vocoder_minutes: float = Field(0.0, ge=0)
    """Time for fine-tuning the parent's own vocoder after the style search (0: none)."""
    request_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:\-]{8,128}$")
    """The same request sent twice (a double click, a retry after a lost answer) is one job."""

    def consent_record(self) -> Consent:
        return Consent(
            recorded_by=self.recorded_by,
            recorded_at=self.recorded_at or datetime.now(UTC),
            device_id=self.speaker_id,
            statement=self.statement,
        )


def parse_request(fields: Mapping[str, object], max_budget: float) -> CloneRequest:
    try:
        request = CloneRequest.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UploadError(f"the form is incomplete or wrong: {problems}") from None
    if not request.consent:
        raise UploadError(
            "no consent: a voice is cloned only when the parent agreed to the statement; "
            "tick 'the parent agreed' once the signed consent is on file"
        )
    if request.budget_minutes + request.vocoder_minutes > max_budget:
        raise UploadError(
            f"budget_minutes + vocoder_minutes = {request.budget_minutes + request.vocoder_minutes:g} is above "
            f"this studio's limit of {max_budget:g}"
        )
    return request


@functools.cache
def _encoder() -> SpeakerEncoder:
    return SpeakerEncoder()


def _safe_name(index: int, name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name or "recording").name)[-80:].lstrip(".") or "recording"
    return f"{index:02d}-{cleaned}"


def stage(folder: Path, recordings: list[tuple[str, bytes]], transcripts: list[str]) -> list[Path]:
    """Write the recordings (and transcripts beside them, as enrollment reads them) into `folder`."""
    if not recordings:
        raise UploadError("no recordings: upload the parent's recordings (wav, flac, ogg or mp3)")
    if len(recordings) > MAX_RECORDINGS:
        raise UploadError(f"{len(recordings)} recordings; at most {MAX_RECORDINGS} in one upload")
    if transcripts and len(transcripts) != len(recordings):
        raise UploadError(f"{len(recordings)} recordings but {len(transcripts)} transcripts; give one per recording")
    folder.mkdir(parents=True)
    paths = []
    for i, (name, data) in enumerate(recordings, 1):
        path = folder / _safe_name(i, name)
        path.write_bytes(data)
        if transcripts and transcripts[i - 1].strip():
            path.with_suffix(".txt").write_text(transcripts[i - 1].strip(), encoding="utf-8")
        paths.append(path)
    return paths


def check_recordings(paths: list[Path]) -> None:
    """The enrollment checks of `voicelab clone`; RecordingError names every problem."""
    enroll(paths, _encoder())


def request_key(request: CloneRequest, recordings: list[tuple[str, bytes]]) -> str:
    """The request's own id, or one made from what was sent (the same upload twice is one job)."""
    if request.request_id:
        return request.request_id
    h = hashlib.sha256(request.model_dump_json(exclude={"recorded_at", "request_id"}).encode())
    for _, data in recordings:
        h.update(hashlib.sha256(data).digest())
    return "sha256-" + h.hexdigest()[:32]


def write_job(folder: Path, staged: list[Path], request: CloneRequest, job_folder: Path) -> None:
    """Move the checked upload into the job's own folder with what the worker needs."""
    job_folder.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(folder), str(job_folder))
    spec = {
        "recordings": [p.name for p in staged],
        "voice_id": request.voice_id,
        "display_name": request.display_name,
        "lang": request.lang,
        "budget_minutes": request.budget_minutes,
        "vocoder_minutes": request.vocoder_minutes,
        "consent": json.loads(request.consent_record().model_dump_json()),
    }
    tmp = job_folder / "job.json.partial"
    tmp.write_text(json.dumps(spec, indent=1, ensure_ascii=False))
    tmp.replace(job_folder / "job.json")
