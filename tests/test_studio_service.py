"""The studio as a service on real parts: a real Redis, the web API and two clone workers
as processes. A voice is cloned from shared/evalset recordings on a short budget while one
worker is killed mid-clone; the other resumes from the checkpoint and the signed pack
verifies and installs on a speaker. Bad uploads are refused before anything is queued."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import soundfile as sf

from hearmylove.basemodel import read_manifest
from hearmylove.broker import Account
from hearmylove.engine.engine import Engine
from hearmylove.voicepack import verify_pack
from voicelab.pack import generate_key, load_signing_key, public_key_base64
from voicelab.service.jobs import JobStore, Status

from .rigs import running_daemon
from .studio_data import paths, utterances
from .studio_service_rig import Process, start_api, start_redis, start_worker, studio_env

DEVICE = "kid-016"
FORM = {
    "speaker_id": DEVICE,
    "voice_id": "papa",
    "display_name": "Papa",
    "lang": "en",
    "recorded_by": "Papa (p226)",
    "consent": "true",
}
BUDGET_MINUTES = "1.0"
"""Short, but a few generations long: there is a checkpoint to resume from when a worker dies."""


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, Path]]:
    """(Redis port, studio folder, signing key); the Redis lives as long as the module."""
    folder = tmp_path_factory.mktemp("studio")
    key = folder / "studio.key"
    generate_key(key)
    server, port = start_redis(folder / "redis")
    yield port, folder, key
    server.stop()


@pytest.fixture(scope="module")
def api(studio: tuple[int, Path, Path]) -> Iterator[httpx.Client]:
    port, folder, key = studio
    process, client = start_api(studio_env(port, folder, key), folder)
    yield client
    client.close()
    process.stop()


def recordings(speaker: str, n: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("recordings", (p.name, p.read_bytes(), "audio/flac")) for p in paths(speaker, n)]


def queued(port: int) -> int:
    """Messages waiting in the clone queue, and job records made."""
    r = redis.Redis(port=port)
    return int(r.llen("clone")) + len(r.keys("hml:studio:job:*"))


def refused(api: httpx.Client, files: list, **form: str) -> str:
    response = api.post("/jobs", data={**FORM, **form}, files=files)
    assert response.status_code == 400, response.text
    return str(response.json()["detail"])


def test_the_page_has_the_form(api: httpx.Client) -> None:
    page = api.get("/").text
    assert 'name="recordings"' in page and 'name="consent"' in page and "I agree" in page


def test_bad_uploads_are_refused_before_anything_is_queued(api: httpx.Client, studio: tuple[int, Path, Path]) -> None:
    port = studio[0]
    detail = refused(api, [("recordings", ("mama.wav", b"RIFF but not really a wave file", "audio/wav"))])
    assert "01-mama.wav: cannot read it as audio" in detail

    clip, rate = sf.read(paths("p226", 1)[0])
    short = io.BytesIO()
    sf.write(short, clip[: 2 * rate], rate, format="WAV")
    assert "too little speech" in refused(api, [("recordings", ("short.wav", short.getvalue(), "audio/wav"))])

    two = recordings("p226", 2) + recordings("p225", 2)
    detail = refused(api, two)
    assert "2 different speakers" in detail and "p225_" in detail and "p226_" in detail

    assert "no consent" in refused(api, recordings("p226", 2), consent="false")
    assert "recorded_by" in refused(api, recordings("p226", 2), recorded_by="")
    assert "budget_minutes" in refused(api, recordings("p226", 2), budget_minutes="1000")
    assert queued(port) == 0
    assert api.get("/jobs").json() == []


def test_a_job_is_held_by_one_worker_and_finished_once(studio: tuple[int, Path, Path]) -> None:
    store = JobStore.connect(f"redis://127.0.0.1:{studio[0]}/1")  # another database: the API's list stays empty
    record = {"voice_id": "v", "display_name": "V", "device_id": "kid-1", "lang": "en", "budget_minutes": 1.0}
    job_id, new = store.create("request-one", record)
    assert new and store.create("request-one", record) == (job_id, False)
    assert store.take(job_id, "a", "w1", 3) == 1
    assert store.take(job_id, "b", "w2", 3) == 0  # held
    time.sleep(4.0)  # w1 died: its lease ran out
    assert store.take(job_id, "b", "w2", 30) == 2
    assert not store.finish(job_id, "a", Status.done)  # the dead worker's token finishes nothing
    assert store.finish(job_id, "b", Status.done)
    assert store.take(job_id, "c", "w3", 30) == -1  # done: nothing left to do
    job = store.get(job_id)
    assert job is not None and (job.status, job.attempts, job.worker) == (Status.done, 2, "w2")


def wait_job(api: httpx.Client, job_id: str, until: object, timeout: float = 1200.0) -> dict:
    """Poll the job until `until(job)` holds; generous: the machine is shared and slow."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.get(f"/jobs/{job_id}").json()
        if until(job):  # type: ignore[operator]
            return job
        assert job["status"] != "failed", job
        time.sleep(1.0)
    raise TimeoutError(f"job {job_id} did not get there within {timeout:.0f} s: {job}")


def test_a_voice_survives_a_dead_worker_and_reaches_the_speaker(
    studio: tuple[int, Path, Path], tmp_path: Path, engine: Engine, model_dir: Path
) -> None:
    port, folder, key = studio
    trusted = [public_key_base64(load_signing_key(key))]
    studio_account = Account("studio", "studio-pw", devices=(DEVICE,))
    with running_daemon(tmp_path, engine, DEVICE, "ma", (studio_account,), trusted_keys=trusted) as rig:
        broker = {"broker_host": "127.0.0.1", "broker_port": str(rig.broker.port), "broker_tls": "false"}
        env = studio_env(port, folder, key, broker_user="studio", broker_password="studio-pw", **broker)
        logs = tmp_path / "logs"
        logs.mkdir()
        api_process, api = start_api(env, logs)
        workers = {name: start_worker(name, env, logs) for name in ("w1@studio", "w2@studio")}
        try:
            _clone_kill_deliver(api, workers, key, model_dir, port)
        finally:
            for process in [*workers.values(), api_process]:
                process.stop()
            api.close()


def _clone_kill_deliver(api: httpx.Client, workers: dict[str, Process], key: Path, model_dir: Path, port: int) -> None:
    texts = [r["transcript"].capitalize() for r in utterances("p226")[:4]]
    form = {**FORM, "budget_minutes": BUDGET_MINUTES, "request_id": "test-016-papa"}
    response = api.post("/jobs", data={**form, "transcripts": texts}, files=recordings("p226", 4))
    assert response.status_code == 202, response.text
    job_id = response.json()["job"]["id"]

    # Kill the worker that clones once the adaptation has a checkpoint: a machine lost mid-job.
    job = wait_job(api, job_id, lambda j: any(line.startswith("adapting") for line in j["progress"]))
    assert job["status"] == "running" and job["attempts"] == 1
    first = job["worker"]
    workers[first].kill()

    job = wait_job(api, job_id, lambda j: j["status"] == "done")
    survivor = next(name for name in workers if name != first)
    assert job["worker"] == survivor and job["attempts"] == 2
    assert any(line.startswith("resuming adaptation") for line in job["progress"]), job["progress"]

    pack = api.get(f"/jobs/{job_id}/pack")
    assert pack.status_code == 200
    manifest = verify_pack(
        _write(key.with_name("papa.tar"), pack.content),
        [load_signing_key(key).public_key()],
        str(read_manifest(model_dir)["base_model_sha256"]),
    )
    assert (manifest.voice_id, manifest.consent.device_id, manifest.consent.recorded_by) == (
        "papa",
        DEVICE,
        "Papa (p226)",
    )

    # The same request again is the same job, already done: nothing runs twice.
    again = api.post("/jobs", data={**form, "transcripts": texts}, files=recordings("p226", 4))
    assert again.status_code == 202 and again.json() | {"job": None} == {"job": None, "new": False}
    assert again.json()["job"]["id"] == job_id and again.json()["job"]["attempts"] == 2
    assert redis.Redis(port=port).llen("clone") == 0

    assert api.post(f"/jobs/{job_id}/push", json={"family_agrees": False}).status_code == 400
    pushed = api.post(f"/jobs/{job_id}/push", json={"family_agrees": True}).json()
    assert pushed["ok"], pushed
    assert (pushed["result"]["voice_id"], pushed["result"]["active"]) == ("papa", True)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
