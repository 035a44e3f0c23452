"""Job records in Redis: one per request, a lease per running clone, progress lines.

Why Redis and not the worker's memory: workers come and go (a machine dies mid-clone),
so what a job is, who holds it and how far it got must outlive any of them. The request
key makes a resubmitted upload return the same job; the lease makes sure only one worker
clones a job at a time and that a dead worker's job is taken over once its lease runs
out; a job is marked done only by the worker that holds its lease, so it is finished once.
"""

from __future__ import annotations

import secrets
import time
from enum import StrEnum
from typing import Any

import redis
from pydantic import BaseModel

PREFIX = "hml:studio"
LOG_LINES = 200

_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_TAKE = """
local status = redis.call('hget', KEYS[2], 'status')
if status == 'done' or status == 'failed' then return -1 end
if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
redis.call('hset', KEYS[2], 'status', 'running', 'worker', ARGV[3], 'updated', ARGV[4])
return redis.call('hincrby', KEYS[2], 'attempts', 1)
"""
_FINISH = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('hget', KEYS[2], 'status') == 'done' then return 0 end
redis.call('hset', KEYS[2], 'status', ARGV[2], 'error', ARGV[3], 'updated', ARGV[4])
redis.call('del', KEYS[1])
return 1
"""


class Status(StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


class Job(BaseModel):
    """What the page and the API show of a job."""

    id: str
    request_id: str
    status: Status
    voice_id: str
    display_name: str
    device_id: str
    lang: str
    budget_minutes: float
    created: float
    updated: float
    attempts: int = 0
    """Workers that started it (a second one means the first died or failed)."""
    worker: str = ""
    """The worker that started it last."""
    error: str = ""
    progress: list[str] = []
    """The clone's progress lines, oldest first (the last LOG_LINES)."""


class JobStore:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._finish = client.register_script(_FINISH)
        self._take = client.register_script(_TAKE)

    @classmethod
    def connect(cls, url: str) -> JobStore:
        return cls(redis.Redis.from_url(url, decode_responses=True))

    def _job(self, job_id: str) -> str:
        return f"{PREFIX}:job:{job_id}"

    def _lease(self, job_id: str) -> str:
        return f"{PREFIX}:lease:{job_id}"

    def create(self, request_id: str, fields: dict[str, str | float]) -> tuple[str, bool]:
        """(job id, True) for a new request; (the existing job's id, False) for one seen before."""
        job_id = secrets.token_hex(8)
        if not self.r.set(f"{PREFIX}:request:{request_id}", job_id, nx=True):
            existing = self.r.get(f"{PREFIX}:request:{request_id}")
            return str(existing), False
        now = time.time()
        record: dict[Any, Any] = {**fields, "id": job_id, "request_id": request_id}  # redis-py's Mapping type
        record |= {"status": str(Status.queued), "created": now, "updated": now, "attempts": 0}
        record |= {"worker": "", "error": ""}
        self.r.hset(self._job(job_id), mapping=record)
        self.r.zadd(f"{PREFIX}:jobs", {job_id: now})
        return job_id, True

    def get(self, job_id: str) -> Job | None:
        record = self.r.hgetall(self._job(job_id))
        if not record:
            return None
        return Job.model_validate({**record, "progress": self.r.lrange(self._job(job_id) + ":log", 0, -1)})

    def recent(self, count: int = 50) -> list[Job]:
        ids = self.r.zrevrange(f"{PREFIX}:jobs", 0, count - 1)
        return [job for job in (self.get(str(i)) for i in ids) if job is not None]

    def note(self, job_id: str, line: str) -> None:
        key = self._job(job_id) + ":log"
        with self.r.pipeline() as p:
            p.rpush(key, line)
            p.ltrim(key, -LOG_LINES, -1)
            p.hset(self._job(job_id), "updated", time.time())
            p.execute()

    def take(self, job_id: str, token: str, worker: str, lease_seconds: float) -> int:
        """Hold the job for `lease_seconds` if nobody does: the attempt's number (1, 2, ...);
        0 while another worker holds it; -1 once it is done or failed (nothing left to do)."""
        keys = [self._lease(job_id), self._job(job_id)]
        return int(self._take(keys=keys, args=[token, int(lease_seconds * 1000), worker, time.time()]))

    def renew(self, job_id: str, token: str, lease_seconds: float) -> bool:
        return bool(self._renew(keys=[self._lease(job_id)], args=[token, int(lease_seconds * 1000)]))

    def release(self, job_id: str, token: str) -> None:
        self._release(keys=[self._lease(job_id)], args=[token])

    def held(self, job_id: str) -> bool:
        return bool(self.r.exists(self._lease(job_id)))

    def finish(self, job_id: str, token: str, status: Status, error: str = "") -> bool:
        """Mark done or failed, only while holding the lease and only once; False if not ours (any more)."""
        keys = [self._lease(job_id), self._job(job_id)]
        return bool(self._finish(keys=keys, args=[token, str(status), error, time.time()]))

    def fail_unheld(self, job_id: str, error: str) -> None:
        """Fail a job nobody holds (its attempts are used up)."""
        self.r.hset(self._job(job_id), mapping={"status": Status.failed, "error": error, "updated": time.time()})
