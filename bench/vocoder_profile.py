"""Where each vocoder spends its time, per operator type (onnxruntime's profiler), side by side.

One held-out sentence, 2 threads, after a warm-up run; prints each variant's share of kernel
time by operator type (top 8) and its total. Complements bench/vocoder_variants.py, which
times the variants against Piper.

usage: .venv/bin/python bench/vocoder_profile.py [--student DIR]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vocoder_variants import COST_TEXT, run, variant_paths  # noqa: E402

from hearmylove.engine.config import EngineConfig  # noqa: E402
from hearmylove.engine.engine import Engine  # noqa: E402


def profile(path: Path, feeds: list, tmp: Path) -> dict[str, float]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp / path.stem)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for f in feeds:
        run(session, f)  # warm-up, then the measured pass
    for f in feeds:
        run(session, f)
    events = json.loads(Path(session.end_profiling()).read_text())
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    per_op: dict[str, float] = collections.defaultdict(float)
    for e in kernels[len(kernels) // 2 :]:  # the second pass only
        per_op[e["args"]["op_name"]] += e["dur"] / 1e6
    return dict(per_op)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", help="build the student from this head folder first (default: as built)")
    args = parser.parse_args()
    engine = Engine.load(EngineConfig(threads=2))
    feeds = [engine.features(u.phonemes, engine.voice(None, "en")) for u in engine.frontend.utterances(COST_TEXT, "en")]
    with tempfile.TemporaryDirectory() as tmp:
        paths = variant_paths(engine.config.model_dir, Path(tmp), Path(args.weights) if args.weights else None)
        for name, path in paths.items():
            per_op = profile(path, feeds, Path(tmp))
            total = sum(per_op.values())
            top = sorted(per_op.items(), key=lambda kv: -kv[1])[:8]
            shares = ", ".join(f"{op} {t / total:.0%}" for op, t in top)
            print(f"| {name} | {total:.3f} s | {shares} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
