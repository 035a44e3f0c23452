"""Shared fixtures: the base models are exported once per machine, the engine loaded once per run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from hearmylove.engine.config import EngineConfig
from hearmylove.engine.engine import Engine
from hearmylove.paths import default_model_dir
from voicelab.build import build

# CI explores the same examples every run (a landing must not hang on luck); developers'
# runs explore at random and find new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The real export, in the data folder (HEARMYLOVE_DATA), made from the installed packages."""
    config = EngineConfig(model_dir=default_model_dir())
    build(config.model_dir, progress=lambda _: None)  # what setup.sh builds; kept when already there
    return config.model_dir


@pytest.fixture(scope="session")
def engine(model_dir: Path) -> Engine:
    return Engine.load(EngineConfig(model_dir=model_dir, threads=2))


@pytest.fixture(autouse=True, scope="session")
def _own_voice_bank(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Voices a developer's studio cloned before must not steer the tests' clones."""
    os.environ["VOICELAB_BANK"] = str(tmp_path_factory.mktemp("voice-bank"))


@pytest.fixture(autouse=True, scope="session")
def _quiet_threads() -> None:
    # Whisper (CTranslate2) and onnxruntime share 2 cores in tests.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
