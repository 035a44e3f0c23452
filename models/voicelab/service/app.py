"""The studio's web API and the technician's page (FastAPI).

POST /jobs        upload recordings + consent + speaker id -> a job id (checked before queueing)
GET  /jobs/{id}   status and progress lines        GET /jobs/{id}/pack   the signed pack when done
POST /jobs/{id}/push   send the pack to the speaker through the family broker (the family agreed)
GET  /            the page: the same form and a list of jobs that refreshes itself
"""

from __future__ import annotations

import secrets
import shutil
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel

from hearmylove.errors import HearMyLoveError, RecordingError
from hearmylove.remote import Remote

from ..cli import DEFAULT_STATEMENT
from .jobs import Job, JobStore, Status
from .uploads import check_recordings, parse_request, request_key, stage, write_job
from .worker import clone_job, job_folder, pack_path, settings


class Submitted(BaseModel):
    job: Job
    new: bool
    """False when this request was sent before: the job is the earlier one."""


class PushRequest(BaseModel):
    family_agrees: bool
    """The family asked for the voice to be sent to their speaker now."""
    activate: bool = True


class PushResult(BaseModel):
    ok: bool
    result: dict[str, Any] | None = None
    error: str | None = None


def _store() -> JobStore:
    return JobStore.connect(settings.redis_url)


def create_app() -> FastAPI:
    app = FastAPI(title="Hear My Love studio", version="1")
    store = _store()

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        html = files("voicelab.service").joinpath("page.html").read_text(encoding="utf-8")
        return (
            html.replace("{{STATEMENT}}", DEFAULT_STATEMENT)
            .replace("{{BUDGET}}", f"{settings.budget_minutes:g}")
            .replace("{{VOCODER}}", f"{settings.vocoder_minutes:g}")
        )

    @app.post("/jobs", status_code=202)
    def submit(
        recordings: Annotated[list[UploadFile], File(description="the parent's recordings")],
        speaker_id: Annotated[str, Form()] = "",
        voice_id: Annotated[str, Form()] = "",
        recorded_by: Annotated[str, Form()] = "",
        consent: Annotated[bool, Form()] = False,
        display_name: Annotated[str | None, Form()] = None,
        lang: Annotated[str, Form()] = "en",
        statement: Annotated[str, Form()] = DEFAULT_STATEMENT,
        recorded_at: Annotated[str | None, Form()] = None,
        budget_minutes: Annotated[float | None, Form()] = None,
        vocoder_minutes: Annotated[float | None, Form()] = None,
        request_id: Annotated[str | None, Form()] = None,
        transcripts: Annotated[list[str] | None, Form()] = None,
    ) -> Submitted:
        fields = {
            "speaker_id": speaker_id,
            "voice_id": voice_id,
            "display_name": display_name or voice_id,
            "lang": lang,
            "recorded_by": recorded_by,
            "recorded_at": recorded_at or None,
            "statement": statement,
            "consent": consent,
            "budget_minutes": budget_minutes or settings.budget_minutes,
            "vocoder_minutes": settings.vocoder_minutes if vocoder_minutes is None else vocoder_minutes,
            "request_id": request_id or None,
        }
        uploaded = [(f.filename or "recording", f.file.read()) for f in recordings]
        staging = settings.folder / "incoming" / secrets.token_hex(8)
        try:
            request = parse_request(fields, settings.max_budget_minutes)
            paths = stage(staging, uploaded, [t for t in transcripts or []])
            check_recordings(paths)
        except RecordingError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise HTTPException(400, str(exc)) from None
        record: dict[str, str | float] = {
            "voice_id": request.voice_id,
            "display_name": request.display_name,
            "device_id": request.speaker_id,
            "lang": request.lang,
            "budget_minutes": request.budget_minutes,
        }
        job_id, new = store.create(request_key(request, uploaded), record)
        if new:
            write_job(staging, paths, request, job_folder(job_id))
            clone_job.delay(job_id)
        else:
            shutil.rmtree(staging, ignore_errors=True)
        return Submitted(job=_job(store, job_id), new=new)

    @app.get("/jobs")
    def jobs() -> list[Job]:
        return store.recent()

    @app.get("/jobs/{job_id}")
    def job(job_id: str) -> Job:
        return _job(store, job_id)

    @app.get("/jobs/{job_id}/pack")
    def pack(job_id: str) -> FileResponse:
        found = _done(store, job_id)
        return FileResponse(pack_path(job_id), media_type="application/x-tar", filename=f"{found.voice_id}.tar")

    @app.post("/jobs/{job_id}/push")
    def push(job_id: str, body: PushRequest) -> PushResult:
        found = _done(store, job_id)
        if not body.family_agrees:
            raise HTTPException(400, "the family has not agreed to receive the voice now; ask them first")
        return _push(found, pack_path(job_id), body.activate)

    return app


def _job(store: JobStore, job_id: str) -> Job:
    found = store.get(job_id)
    if found is None:
        raise HTTPException(404, f"no job {job_id!r}")
    return found


def _done(store: JobStore, job_id: str) -> Job:
    found = _job(store, job_id)
    if found.status != Status.done:
        raise HTTPException(409, f"job {job_id} is {found.status}, not done: its pack is not ready")
    return found


def _push(job: Job, pack: Path, activate: bool) -> PushResult:
    """Through the family broker as `hearmylove-remote voice install` does, with the studio's account."""
    from hearmylove_remote import voices

    if not (settings.broker_host and settings.broker_user and settings.broker_password):
        raise HTTPException(
            503, "pushing is off: set HML_STUDIO_BROKER_HOST, _USER and _PASSWORD (the studio's broker account)"
        )
    ca = str(settings.broker_ca) if settings.broker_ca else None
    remote = Remote(
        settings.broker_host,
        settings.broker_port,
        settings.broker_user,
        settings.broker_password,
        tls=settings.broker_tls,
        ca_file=ca,
    )
    try:
        with remote.connect():
            reply = voices.install(remote, job.device_id, pack, activate=activate)
    except HearMyLoveError as exc:
        raise HTTPException(502, f"could not reach speaker {job.device_id} through the broker: {exc}") from None
    if reply.ok:
        return PushResult(ok=True, result=reply.result)
    assert reply.error is not None
    return PushResult(ok=False, error=f"{reply.error.code}: {reply.error.message}")
