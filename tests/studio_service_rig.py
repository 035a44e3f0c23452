"""The studio service's real parts for tests: a Redis on a free port, the web API and
clone workers as their own processes (as `voicelab-studio serve|worker` run them)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hearmylove.broker import free_port

from .rigs import listening

BIN = Path(sys.executable).parent


class Process:
    """A child in its own process group (a worker is killed whole, as a dead machine would be)."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def kill(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=30)

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_listening(port: int, process: Process, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not listening(port):
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.log.name} exited: {process.log.read_text(errors='replace')[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listened on {port} within {timeout:.0f} s; see {process.log}")
        time.sleep(0.1)


def start_redis(folder: Path) -> tuple[Process, int]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        pytest.fail("redis-server not found; install it with: apt-get install redis-server (setup.sh does)")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(folder),
    ]
    redis = Process(args, folder / "redis.log", dict(os.environ))
    wait_listening(port, redis)
    return redis, port


def studio_env(redis_port: int, folder: Path, key: Path, **more: str) -> dict[str, str]:
    """Short leases and visibility so a dead worker's job moves on in seconds, not minutes."""
    return {
        **os.environ,
        "HML_STUDIO_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "HML_STUDIO_FOLDER": str(folder),
        "HML_STUDIO_KEY": str(key),
        "HML_STUDIO_LEASE_SECONDS": "4",
        "HML_STUDIO_VISIBILITY_TIMEOUT": "10",
        "HML_STUDIO_RESTORE_INTERVAL": "2",
        "HML_STUDIO_VOCODER_MINUTES": "0",  # the kill-and-resume test is about the queue; the CLI test adapts
        **{f"HML_STUDIO_{k.upper()}": v for k, v in more.items()},
    }


def start_api(env: dict[str, str], logs: Path) -> tuple[Process, httpx.Client]:
    port = free_port()
    api = Process([str(BIN / "voicelab-studio"), "serve", "--port", str(port)], logs / "api.log", env)
    wait_listening(port, api)
    return api, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)


def start_worker(name: str, env: dict[str, str], logs: Path) -> Process:
    return Process([str(BIN / "voicelab-studio"), "worker", "--name", name], logs / f"{name}.log", env)
