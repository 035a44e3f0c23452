"""Distilling Kokoro's vocoder into the student head (student.py; merged with the front by build.py).

`make_data` renders what the teacher says for many texts (English and Mandarin) in many
voices: random blends of the stock voices with noise on the timbre half, the way cloned
voices sit around them, never a stock voice itself (those are the held-out voices of the
gates). Each utterance is one shard: the front's features and harmonic source (the head's
inputs) and the teacher's samples (its target). Shards are written whole (temp + rename),
so an interrupted run goes on where it stopped.
"""

from __future__ import annotations

import functools
import math
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import onnxruntime as ort

from hearmylove.durable import fsync
from hearmylove.engine.config import EngineConfig
from hearmylove.engine.engine import SAMPLE_RATE, Engine, Features, session_options
from hearmylove.engine.voices import TIMBRE_DIMS, Voice
from hearmylove.errors import ModelError

from .build import extract_front

if TYPE_CHECKING:
    import torch

HERE = Path(__file__).resolve().parent
Progress = Callable[[str], None]


def corpus() -> list[tuple[str, str]]:
    """(lang, text) lines the teacher reads: the studio's scripts, the story and the distillation
    texts, all written for this project (never the eval set: its speakers and texts judge clones)."""
    lines: list[tuple[str, str]] = []
    for lang in ("en", "zh"):
        script = (HERE / f"prompts_{lang}.txt").read_text(encoding="utf-8").splitlines()
        extra = (HERE / "texts" / f"distill_{lang}.txt").read_text(encoding="utf-8").splitlines()
        story = (HERE.parents[1] / "bench" / "texts" / f"fox_{lang}.txt").read_text(encoding="utf-8").split("\n\n")
        lines += [(lang, t.strip()) for t in script + extra + story if t.strip() and not t.startswith("#")]
    return lines


def random_voice(stock: dict[str, np.ndarray], spread: np.ndarray, rng: np.random.Generator) -> Voice:
    """A blend of 2-3 stock voices with noise on the timbre half: a voice no gate hears."""
    ids = sorted(stock)
    chosen = rng.choice(len(ids), size=int(rng.integers(2, 4)), replace=False)
    weights = rng.dirichlet(np.ones(len(chosen)))
    styles = sum(w * stock[ids[i]] for w, i in zip(weights, chosen, strict=True))
    noise = np.zeros(styles.shape[1], np.float32)
    noise[:TIMBRE_DIMS] = rng.normal(0.0, 0.5, TIMBRE_DIMS) * spread[:TIMBRE_DIMS]
    return Voice("blend", (styles + noise).astype(np.float32))


def _spread(stock: dict[str, np.ndarray]) -> np.ndarray:
    means = np.stack([s.mean(axis=0) for s in stock.values()])
    return np.maximum(means.std(axis=0), 1e-3).astype(np.float32)


def _feed(f: Features) -> dict[str, np.ndarray]:
    return {"asr": f.asr, "F0_pred": f.f0, "N_pred": f.energy, "style_timbre": f.timbre}


def _utterances(engine: Engine, rng: np.random.Generator) -> Iterator[tuple[str, str]]:
    """Utterances taking turns by language: Mandarin as much as English, whatever each corpus holds."""
    by_lang: dict[str, list[str]] = {}
    for lang, text in corpus():
        by_lang.setdefault(lang, []).append(text)
    while True:
        for lang in rng.permutation(sorted(by_lang)):
            lines = by_lang[str(lang)]
            for u in engine.frontend.utterances(lines[int(rng.integers(len(lines)))], str(lang)):
                yield str(lang), u.phonemes


def make_data(out: Path, minutes: float, seed: int = 0, threads: int = 2, progress: Progress = print) -> float:
    """Render shards until `minutes` of teacher audio are on disk; returns the minutes there."""
    out.mkdir(parents=True, exist_ok=True)
    engine = Engine.load(EngineConfig(threads=threads, vocoder="int8"))  # the teacher: Kokoro's own
    front_path = out / "front.onnx"
    if not front_path.exists():
        onnx.save(extract_front(engine.config.model_dir / "vocoder.onnx"), str(front_path))
    front = ort.InferenceSession(str(front_path), session_options(engine.config), providers=["CPUExecutionProvider"])
    stock = {vid: engine.voices.get(vid).styles for vid in engine.voices.ids}
    spread = _spread(stock)
    done = shards(out)
    have = sum(np.load(p)["audio"].size for p in done) / SAMPLE_RATE / 60
    index = int(done[-1].stem) + 1 if done else 0
    rng = np.random.default_rng(seed + index)  # a resumed run draws new voices, not the same ones again
    started, last = time.monotonic(), 0.0
    for lang, phonemes in _utterances(engine, rng):
        if have >= minutes:
            break
        if len(phonemes) < 8:
            continue
        voice = random_voice(stock, spread, rng)
        f = engine.features(phonemes, voice, speed=float(rng.uniform(0.85, 1.15)))
        features, source, _ = front.run(None, _feed(f))
        audio = engine.vocode_whole(f)
        path = out / f"{index:06d}.npz"
        tmp = path.with_name(path.name + ".partial.npz")
        np.savez(
            tmp,
            features=features[0].astype(np.float16),
            source=source.reshape(-1).astype(np.float16),
            timbre=f.timbre[0],
            audio=audio.astype(np.float32),
            lang=np.array(lang),
        )
        fsync(tmp)
        tmp.replace(path)
        index += 1
        have += audio.size / SAMPLE_RATE / 60
        if time.monotonic() - last > 30:
            last = time.monotonic()
            elapsed = time.monotonic() - started
            progress(f"teacher audio {have:.1f}/{minutes:g} min in {index} shards ({elapsed:.0f} s)")
    fsync(out)
    return have


def shards(data: Path) -> list[Path]:
    return sorted(p for p in data.glob("*.npz") if not re.search(r"\.partial", p.name))


# -- training -------------------------------------------------------------------------

SEGMENT = 64  # 80 Hz frames per training example (0.8 s)
RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))
LOSS_TERMS = ("total", "sc", "mag", "mel", "complex")
COMPLEX_WEIGHT = 0.1  # the phase-aware term: at 0.5 it never converged and pulled magnitudes down
ADVERSARIAL_WEIGHT = 0.1  # the critic's terms, small beside the spectral ones (which do most of the work)
MATCHING_WEIGHT = 0.2
CRITIC_LR = 2e-4
WEIGHTS_FILE = "student-head.pt"
REPRODUCE = [
    "voicelab distill data --out DATA --minutes 20",
    "voicelab distill train --data DATA --checkpoint CKPT --steps 4800 --adversarial-from 4200 --threads 1",
    "voicelab distill export --checkpoint CKPT --data DATA --out models/weights",
    "voicelab build --vocoder student",
]


class Corpus:
    """All shards in memory; random segments in proportion to length."""

    def __init__(self, paths: list[Path]) -> None:
        import torch

        self.items = []
        for p in paths:
            with np.load(p) as d:
                self.items.append(
                    (
                        torch.from_numpy(d["features"].astype(np.float32)),
                        torch.from_numpy(d["source"].astype(np.float32)),
                        torch.from_numpy(d["timbre"]),
                        torch.from_numpy(d["audio"]),
                    )
                )
        lengths = np.array([f.shape[1] for f, *_ in self.items], dtype=np.float64)
        self.weights = lengths / lengths.sum()
        self.seconds = float(lengths.sum() * 300 / SAMPLE_RATE)

    def batch(self, size: int, rng: np.random.Generator) -> tuple:
        import torch

        from .student import HOP

        feats, sources, timbres, audios = [], [], [], []
        for i in rng.choice(len(self.items), size=size, p=self.weights):
            f, s, t, a = self.items[int(i)]
            start = int(rng.integers(0, max(1, f.shape[1] - SEGMENT)))
            end = start + SEGMENT
            if end > f.shape[1]:  # a short utterance: pad with silence
                f = torch.nn.functional.pad(f, (0, end - f.shape[1]))
                s = torch.nn.functional.pad(s, (0, end * HOP - s.shape[0]))
                a = torch.nn.functional.pad(a, (0, end * HOP - a.shape[0]))
            feats.append(f[:, start:end])
            sources.append(s[start * HOP : end * HOP])
            timbres.append(t)
            audios.append(a[start * HOP : end * HOP])
        return torch.stack(feats), torch.stack(sources), torch.stack(timbres), torch.stack(audios)


def losses(head: Any, batch: tuple) -> dict[str, Any]:
    """Multi-resolution STFT (spectral convergence + log magnitude), log mel, and a phase-aware term."""
    import torch

    from .student import frames_of

    features, source, timbre, audio = batch
    spec = head.spectrum(features, source, timbre)
    pred = head.waveform(spec)
    out: dict[str, Any] = {"sc": 0.0, "mag": 0.0}
    for n_fft, hop in RESOLUTIONS:
        window = torch.hann_window(n_fft)
        p = torch.stft(pred, n_fft, hop, window=window, return_complex=True).abs()
        t = torch.stft(audio, n_fft, hop, window=window, return_complex=True).abs()
        out["sc"] = out["sc"] + torch.linalg.norm(t - p) / torch.linalg.norm(t).clamp_min(1e-6) / len(RESOLUTIONS)
        out["mag"] = out["mag"] + (torch.log(p + 1e-5) - torch.log(t + 1e-5)).abs().mean() / len(RESOLUTIONS)
    window = torch.hann_window(1024)
    mels = _mel_matrix(1024, 80)
    p_mel = mels @ torch.stft(pred, 1024, 256, window=window, return_complex=True).abs()
    t_mel = mels @ torch.stft(audio, 1024, 256, window=window, return_complex=True).abs()
    out["mel"] = (torch.log(p_mel + 1e-5) - torch.log(t_mel + 1e-5)).abs().mean()
    target = head.analyse(frames_of(audio, features.shape[2]))  # the teacher on the head's own grid
    out["complex"] = (spec - target).abs().mean() / target.abs().mean().clamp_min(1e-6)
    out["total"] = out["sc"] + out["mag"] + out["mel"] + COMPLEX_WEIGHT * out["complex"]
    out["audio"] = pred
    return out


@functools.cache
def _mel_matrix(n_fft: int, n_mels: int) -> torch.Tensor:
    """Triangular mel filters (HTK scale) over the STFT bins: the loss hears like a listener."""
    import torch

    def mel(hz: np.ndarray) -> np.ndarray:
        return 2595 * np.log10(1 + hz / 700)

    edges = 700 * (10 ** (np.linspace(0, mel(np.array(SAMPLE_RATE / 2)), n_mels + 2) / 2595) - 1)
    bins = np.linspace(0, SAMPLE_RATE / 2, n_fft // 2 + 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    filters = np.maximum(0, np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)))
    return torch.from_numpy(filters.astype(np.float32))


class _Run:
    """One training run's moving parts: head, optional critic, optimizers, schedule, checkpoint."""

    def __init__(
        self,
        checkpoint: Path,
        steps: int,
        lr: float,
        adversarial_from: int | None,
        init: Path | None,
        progress: Progress,
    ) -> None:
        import torch

        from .adversary import Discriminator
        from .student import StudentHead

        self.checkpoint, self.steps, self.adversarial_from = checkpoint, steps, adversarial_from
        self.head = StudentHead()
        self.optimizer = torch.optim.AdamW(self.head.parameters(), lr=lr, weight_decay=1e-4, betas=(0.8, 0.99))
        self.critic = Discriminator()
        self.critic_optimizer = torch.optim.AdamW(self.critic.parameters(), lr=CRITIC_LR, betas=(0.8, 0.99))
        self.state: dict = {"step": 0, "history": [], "seconds": 0.0}
        if checkpoint.exists():
            saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
            self.head.load_state_dict(saved["model"])
            self.optimizer.load_state_dict(saved["optimizer"])
            if "critic" in saved:
                self.critic.load_state_dict(saved["critic"])
                self.critic_optimizer.load_state_dict(saved["critic_optimizer"])
            self.state = saved["state"]
            progress(f"resuming from step {self.state['step']} ({checkpoint})")
        elif init is not None:  # fine-tune: the shipped weights, a fresh optimizer and schedule
            shipped = torch.load(init, map_location="cpu", weights_only=True)
            self.head.load_state_dict({k: v.float() for k, v in shipped["model"].items()})
            progress(f"starting from the weights in {init}")
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, self._rate, last_epoch=self.state["step"] - 1
        )

    def _rate(self, step: int) -> float:
        warm = min(1.0, (step + 1) / min(100, max(1, self.steps // 10)))
        return warm * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(step, self.steps) / self.steps)))

    @property
    def adversarial(self) -> bool:
        return self.adversarial_from is not None and self.state["step"] >= self.adversarial_from

    def step(self, batch: tuple) -> float:
        """One update of the head (and, in the adversarial phase, of the critic first)."""
        import torch

        from .adversary import critic_loss, generator_terms

        self.head.train()
        loss = losses(self.head, batch)
        total = loss["total"]
        if self.adversarial:  # the critic hears a quarter of the batch: on a CPU it costs more than the head
            half = batch[3].shape[0] // 4 or 1
            audio, fake = batch[3][:half], loss["audio"][:half]
            self.critic_optimizer.zero_grad()
            critic_loss(self.critic, audio, fake).backward()
            self.critic_optimizer.step()
            adversarial, matching = generator_terms(self.critic, audio, fake)
            total = total + ADVERSARIAL_WEIGHT * adversarial + MATCHING_WEIGHT * matching
        self.optimizer.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(self.head.parameters(), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.state["step"] += 1
        return float(total.detach())

    def save(self) -> None:
        payload = {
            "model": self.head.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "state": self.state,
            "config": self.head.config,
        }
        if self.adversarial:  # the critic exists only from its phase on
            payload["critic"] = self.critic.state_dict()
            payload["critic_optimizer"] = self.critic_optimizer.state_dict()
        save_checkpoint(self.checkpoint, payload)


def train(
    data: Path,
    checkpoint: Path,
    steps: int = 3000,
    minutes: float | None = None,
    until: int | None = None,
    batch: int = 16,
    lr: float = 2e-3,
    threads: int = 2,
    seed: int = 0,
    adversarial_from: int | None = None,
    init: Path | None = None,
    progress: Progress = print,
) -> dict:
    """Train (or go on training) the head for a schedule of `steps`; stop early after `minutes` or
    at step `until` (run again to go on). From step `adversarial_from` on, a spectrogram critic
    joins the losses. `init` starts a new run from shipped weights (models/weights/student-head.pt)
    instead of from scratch. A checkpoint every 50 steps, so a stop loses little."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    paths = shards(data)
    if len(paths) < 2:
        raise ModelError(f"{data} holds {len(paths)} teacher shards (2 at least); run `voicelab distill data` first")
    held = max(1, len(paths) // 30)
    train_set, val_set = Corpus(paths[held:]), Corpus(paths[:held])
    run = _Run(checkpoint, steps, lr, adversarial_from, init, progress)
    state = run.state
    state["recipe"] = {
        "steps": steps,
        "batch": batch,
        "segment_frames": SEGMENT,
        "lr": lr,
        "adversarial_from": adversarial_from,
        "weights": {"complex": COMPLEX_WEIGHT, "adversarial": ADVERSARIAL_WEIGHT, "matching": MATCHING_WEIGHT},
        "init": str(init) if init else None,
        "threads": threads,
    }
    progress(
        f"training on {train_set.seconds / 60:.1f} min of teacher audio, {len(paths) - held} shards; {held} held out"
    )
    rng = np.random.default_rng(seed + state["step"])
    val_batches = [val_set.batch(batch, np.random.default_rng(1000 + i)) for i in range(2)]
    deadline = time.monotonic() + minutes * 60 if minutes else None
    stop = min(steps, until) if until is not None else steps
    clock = [time.monotonic()]

    def evaluate(train_loss: float) -> None:
        run.head.eval()
        with torch.no_grad():
            val = [losses(run.head, b) for b in val_batches]
        row = {
            "step": state["step"],
            "train": train_loss,
            **{f"val_{k}": float(np.mean([float(v[k]) for v in val])) for k in LOSS_TERMS},
        }
        state["seconds"] += time.monotonic() - clock[0]
        clock[0] = time.monotonic()
        state["history"].append(row)
        run.save()
        progress(
            f"step {state['step']}/{steps}: train {row['train']:.3f}, held-out {row['val_total']:.3f} "
            f"(sc {row['val_sc']:.3f}, log-mag {row['val_mag']:.3f}, mel {row['val_mel']:.3f}, "
            f"complex {row['val_complex']:.3f}){' +critic' if run.adversarial else ''}, {state['seconds'] / 60:.1f} min"
        )

    if not state["history"]:
        evaluate(float("nan"))  # where an untrained head starts
    train_loss = float("nan")
    while state["step"] < stop and (deadline is None or time.monotonic() < deadline):
        train_loss = run.step(train_set.batch(batch, rng))
        if state["step"] % 50 == 0 or state["step"] in (stop, steps):
            evaluate(train_loss)
    if state["history"][-1]["step"] != state["step"]:  # stopped by the clock between checkpoints
        evaluate(train_loss)
    return state


def save_checkpoint(path: Path, payload: dict) -> None:
    """torch.save under a temporary name, flushed, then renamed: a power cut leaves the last one."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    torch.save(payload, tmp)
    fsync(tmp)
    tmp.replace(path)


def export(checkpoint: Path, out_dir: Path, data: Path | None = None, progress: Progress = print) -> Path:
    """Checkpoint -> what ships in models/weights/: the head as ONNX without its DFT matrices (the
    build computes them), the weights the studio fine-tunes from (fp16, no optimizer state), and a
    manifest with every file's sha256, how it was trained and the command that reproduces it."""
    import json

    import torch

    from hearmylove.basemodel import _sha256

    from .build import HEAD_FILE, HEAD_MANIFEST, strip_dft
    from .student import HOP, StudentHead

    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    head = StudentHead(**saved["config"])
    head.load_state_dict(saved["model"])
    head.eval()
    head.matrices = True  # plain MatMuls in the graph: an ONNX runtime needs no FFT operator
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path, weights_path = out_dir / HEAD_FILE, out_dir / WEIGHTS_FILE
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / HEAD_FILE
        frames = 40
        example = (torch.zeros(1, 512, frames), torch.zeros(1, HOP * frames, 1), torch.zeros(1, 128))
        torch.onnx.export(
            head,
            example,
            str(raw),
            input_names=["features", "source", "timbre"],
            output_names=["audio"],
            dynamic_axes={"features": {2: "frames"}, "source": {1: "samples"}, "audio": {1: "samples"}},
            opset_version=17,
            dynamo=False,
        )
        model = onnx.load(str(raw))
        computed = strip_dft(model)
        _write(onnx_path, lambda p: onnx.save(model, str(p)))
    weights = {k: v.half() for k, v in head.state_dict().items()}
    _write(weights_path, lambda p: torch.save({"config": saved["config"], "model": weights}, p))
    state = saved["state"]
    manifest = {
        "files": {
            HEAD_FILE: {"sha256": _sha256(onnx_path), "what": "the head as the build merges it (DFT matrices removed)"},
            WEIGHTS_FILE: {
                "sha256": _sha256(weights_path),
                "what": "the head's weights in fp16: the studio fine-tunes from them",
            },
        },
        "computed": computed,
        "config": saved["config"],
        "steps": state["step"],
        "training_minutes": round(state["seconds"] / 60, 1),
        "data_minutes": round(sum(np.load(p)["audio"].size for p in shards(data)) / SAMPLE_RATE / 60, 1)
        if data
        else None,
        "losses": {k: v for k, v in (state["history"][-1] if state["history"] else {}).items()},
        "training": state.get("recipe", {}),
        "torch": torch.__version__,
        "reproduce": REPRODUCE,
    }
    _write(out_dir / HEAD_MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=2) + "\n"))
    digest = manifest["files"][HEAD_FILE]["sha256"]
    progress(f"student head {onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB), sha256 {digest[:16]}")
    return onnx_path


def _write(path: Path, writer: Callable[[Path], object]) -> None:
    tmp = path.with_name(path.name + ".partial")
    writer(tmp)
    fsync(tmp)
    tmp.replace(path)


def plot_history(checkpoint: Path, out: Path) -> Path:
    """Held-out loss terms over the steps of a training run, as a PNG."""
    import matplotlib
    import torch

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = torch.load(checkpoint, map_location="cpu", weights_only=False)["state"]["history"]
    steps = [row["step"] for row in history]
    fig, ax = plt.subplots(figsize=(8, 4))
    labels = {"sc": "spectral convergence", "mag": "log magnitude", "mel": "log mel", "complex": "complex"}
    for term, label in labels.items():
        ax.plot(steps, [row[f"val_{term}"] for row in history], label=label)
    ax.set_xlabel("step (16 x 0.8 s of teacher audio each)")
    ax.set_ylabel("held-out loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    return out
