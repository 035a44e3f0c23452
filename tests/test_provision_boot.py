"""The built image boots in qemu, applies its identity and comes online (slow: minutes to an hour).

Left out of the default run: set HML_BOOT_TEST_IMAGE to an image built by `provision build`
(or run `provision boot-test --image IMG`, which does the same and prints the time).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hearmylove_provision.bootcheck import boot_test

IMAGE = os.environ.get("HML_BOOT_TEST_IMAGE")


@pytest.mark.skipif(not IMAGE, reason="slow qemu boot test: set HML_BOOT_TEST_IMAGE=/path/to/hearmylove.img")
def test_the_image_boots_provisions_itself_and_comes_online(tmp_path: Path) -> None:
    stages: list[tuple[str, float]] = []
    timeout = float(os.environ.get("HML_BOOT_TEST_TIMEOUT", 3600))
    seconds = boot_test(Path(str(IMAGE)), work=tmp_path, timeout=timeout, progress=lambda s, f: stages.append((s, f)))
    assert stages[-1] == ("online", 1.0), stages
    console = (tmp_path / "console.log").read_text(errors="replace")
    assert "Hear My Love first boot" in console and "Hear My Love speaker" in console, console[-3000:]
    assert json.loads((tmp_path / "result.json").read_text()) == {"seconds_to_online": round(seconds, 1)}
