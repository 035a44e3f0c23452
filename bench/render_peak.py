"""Child process for the memory figures: render a story, print seconds and peak RSS.

Run alone (not imported) so that its peak RSS is the engine's, not the benchmark's.
usage: python bench/render_peak.py STORY.txt REPEAT [--english espeak|misaki]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

from hearmylove.engine.config import EngineConfig
from hearmylove.engine.engine import SAMPLE_RATE, Engine


def peak_rss_mb() -> float:
    """This process image's own high-water mark (VmHWM).

    Not `ru_maxrss`: Linux carries that across exec, so a child started from a large
    parent (pytest holding Whisper) would report the parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("story")
    parser.add_argument("repeat", type=int)
    parser.add_argument("--english", default="espeak")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    text = "\n\n".join([Path(args.story).read_text(encoding="utf-8")] * args.repeat)
    engine = Engine.load(EngineConfig(english=args.english, threads=args.threads))
    started = time.perf_counter()
    samples = sum(len(chunk) for chunk in engine.stream(text))
    elapsed = time.perf_counter() - started
    peak_mb = peak_rss_mb()
    print(json.dumps({"audio_s": samples / SAMPLE_RATE, "elapsed_s": elapsed, "peak_rss_mb": peak_mb}))


if __name__ == "__main__":
    main()
