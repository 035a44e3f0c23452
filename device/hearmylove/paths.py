"""Where the speaker keeps its models and state.

On the Pi the daemon runs with `HEARMYLOVE_DATA=/var/lib/hearmylove` (systemd's
StateDirectory); elsewhere the XDG data folder of the user.
"""

from __future__ import annotations

import os
from pathlib import Path

from .basemodel import BASE_MODEL_NAME


def data_dir() -> Path:
    """`$HEARMYLOVE_DATA`, else `$XDG_DATA_HOME/hearmylove` (default `~/.local/share/hearmylove`)."""
    explicit = os.environ.get("HEARMYLOVE_DATA")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(xdg) / "hearmylove"


def default_model_dir() -> Path:
    """Where `voicelab build` writes the models and the speaker reads them."""
    return data_dir() / "models" / BASE_MODEL_NAME


def default_cache_dir() -> Path:
    """Where rendered stories are kept."""
    return data_dir() / "renders"
