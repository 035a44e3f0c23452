"""The built image boots in qemu, applies its identity and comes online (slow: minutes to an hour).

Left out of the default run: set HML_BOOT_TEST_IMAGE to an image built by `provision build`
(or run `provision boot-test --image IMG`, which does the same and prints the time).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hearmylove_provision.bootcheck import boot_test

IMAGE = os.environ.get("HML_BOOT_TEST_IMAGE")


@pytest.mark.skipif(not IMAGE, reason="slow qemu boot test: set HML_BOOT_TEST_IMAGE=/path/to/hearmylove.img")
def test_the_image_boots_provisions_itself_and_comes_online(tmp_path: Path) -> None:
    seconds = boot_test(Path(str(IMAGE)), work=tmp_path, timeout=float(os.environ.get("HML_BOOT_TEST_TIMEOUT", 3600)))
    assert seconds > 0
