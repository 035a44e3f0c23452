"""The clone as a Celery task: any number of workers on any number of machines take jobs.

Run one with `voicelab-studio worker` (one clone at a time per worker: a clone uses every
core it is given). Delivery is at least once (`acks_late`: a job is acknowledged when it
ended, so a worker that dies leaves it to Redis to hand out again after the visibility
timeout); the lease in `jobs` turns that into exactly one clone running and one finishing.
A new holder resumes from the clone's own checkpoint in the job's folder.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from pathlib import Path

from celery import Celery, Task

from hearmylove.errors import HearMyLoveError
from hearmylove.voicepack import Consent

from .jobs import JobStore, Status
from .settings import StudioSettings

log = logging.getLogger(__name__)

QUEUE = "clone"
RETRY_SECONDS = 5.0


class LeaseLost(Exception):
    """Another worker took this job over (this one stalled past its lease): stop, finish nothing."""


def make_celery(settings: StudioSettings) -> Celery:
    app = Celery("hearmylove-studio", broker=settings.redis_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "unacked_restore_interval": settings.restore_interval,
            "unacked_restore_throttle": 1,
        },
    )
    return app


settings = StudioSettings()
celery = make_celery(settings)


def job_folder(job_id: str) -> Path:
    return settings.folder / "jobs" / job_id


def pack_path(job_id: str) -> Path:
    spec = json.loads((job_folder(job_id) / "job.json").read_text())
    return job_folder(job_id) / f"{spec['voice_id']}.tar"


class _Heartbeat(threading.Thread):
    """Renews the lease every third of it; notes when it was lost."""

    def __init__(self, store: JobStore, job_id: str, token: str) -> None:
        super().__init__(daemon=True, name=f"lease-{job_id}")
        self.store, self.job_id, self.token = store, job_id, token
        self.stopped = threading.Event()
        self.lost = False

    def run(self) -> None:
        while not self.stopped.wait(settings.lease_seconds / 3):
            if not self.store.renew(self.job_id, self.token, settings.lease_seconds):
                self.lost = True
                return


def _wait_for_lease(store: JobStore, job_id: str, token: str, worker: str) -> int:
    """The attempt number once this worker holds the job, or -1 when it is finished elsewhere."""
    while (attempt := store.take(job_id, token, worker, settings.lease_seconds)) == 0:
        time.sleep(min(settings.lease_seconds / 4, 5.0))
    return attempt


@celery.task(bind=True, name="studio.clone")
def clone_job(self: Task, job_id: str) -> str:
    """Clone one job's recordings into its signed pack; a no-op for a job already finished."""
    store = JobStore.connect(settings.redis_url)
    if store.get(job_id) is None:
        log.error("job %s has no record; dropped", job_id)
        return "unknown"
    token, worker = secrets.token_hex(8), str(self.request.hostname)
    attempt = _wait_for_lease(store, job_id, token, worker)
    if attempt < 0:
        return "finished elsewhere"
    if attempt > settings.max_attempts:
        store.finish(job_id, token, Status.failed, f"gave up after {settings.max_attempts} attempts")
        return str(Status.failed)
    store.note(job_id, f"{worker}: attempt {attempt} of {settings.max_attempts}")
    beat = _Heartbeat(store, job_id, token)
    beat.start()
    try:
        _clone(store, job_id, beat)
    except LeaseLost:
        log.warning("job %s was taken over by another worker; this attempt stops", job_id)
        return "taken over"
    except HearMyLoveError as exc:  # the recordings or the pack: trying again will not help
        store.note(job_id, f"failed: {exc}")
        store.finish(job_id, token, Status.failed, str(exc))
        return str(Status.failed)
    except Exception as exc:
        log.exception("job %s, attempt %d", job_id, attempt)
        store.note(job_id, f"attempt {attempt} failed: {exc!r}")
        if attempt >= settings.max_attempts:
            store.finish(job_id, token, Status.failed, f"failed {attempt} times, last: {exc!r}")
            return str(Status.failed)
        store.release(job_id, token)
        raise self.retry(exc=exc, countdown=RETRY_SECONDS, max_retries=None) from exc
    finally:
        beat.stopped.set()
    if not store.finish(job_id, token, Status.done):
        return "taken over"
    store.note(job_id, f"{worker}: the signed pack is ready")
    return str(Status.done)


def _clone(store: JobStore, job_id: str, beat: _Heartbeat) -> None:
    from voicelab.studio import clone_voice  # torch and the models only where cloning runs

    spec = json.loads((job_folder(job_id) / "job.json").read_text())

    def progress(message: str) -> None:
        if beat.lost:
            raise LeaseLost(job_id)
        store.note(job_id, message)

    clone_voice(
        [job_folder(job_id) / name for name in spec["recordings"]],
        voice_id=spec["voice_id"],
        display_name=spec["display_name"],
        lang=spec["lang"],
        consent=Consent.model_validate(spec["consent"]),
        key=settings.key,
        out=pack_path(job_id),
        budget_minutes=spec["budget_minutes"],
        vocoder_minutes=spec.get("vocoder_minutes", 0.0),
        progress=progress,
    )
