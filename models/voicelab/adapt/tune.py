"""Fine-tune the student head on a parent's recordings: the studio's vocoder adaptation.

The parent's recordings are aligned to their text (`align`), Kokoro's frozen front turns
the aligned inputs into the head's features once, and the head learns, through a low-rank
update (`lora`), to make the parent's own spectrum from them. Spectral losses only (the
multi-resolution STFT and mel terms the student was distilled with; not the phase term: a
recording's phase is not the synthetic source's). A few utterances are held out: their loss
decides when to stop and which step ships. Resumable from a checkpoint, bounded in time.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, Field

from hearmylove.engine.engine import Features

from ..distill import _mel_matrix, losses, save_checkpoint
from . import lora
from .align import Aligned
from .vocoder import StudentVocoder

SEGMENT = 64  # 80 Hz frames per training example (0.8 s)
HOP = 300
Progress = Callable[[str], None]


class TuneSettings(BaseModel):
    """How the head is fine-tuned; the defaults are the studio's."""

    rank: int = Field(default=lora.RANK, ge=1, le=64, description="rank of each matrix's update")
    lr: float = Field(default=1e-3, gt=0, description="AdamW learning rate")
    batch: int = Field(default=4, ge=1, description="0.8 s segments per step")
    max_steps: int = Field(default=3000, ge=1, description="stop here even with time left")
    eval_every: int = Field(default=50, ge=1, description="steps between held-out checks and checkpoints")
    patience: int = Field(default=5, ge=1, description="held-out checks without a new best before stopping")
    parts: Literal["all", "timbre"] = Field(default="all", description="what trains (`lora.attach`)")
    rehearsal: float = Field(
        default=2.0, ge=0, description="weight of the base head's own speech, which keeps the words clear"
    )
    content: float = Field(
        default=3.0, ge=0, description="weight of `content`: the base head's sound changes, not its words"
    )
    guard: float = Field(
        default=0.05, ge=0, description="the guard's Whisper error may rise this much above the start's"
    )
    seed: int = 0


@dataclass
class Example:
    """One aligned recording, ready for the head: the frozen front's output and the target audio."""

    features: torch.Tensor  # [512, L]
    source: torch.Tensor  # [300 L]
    timbre: torch.Tensor  # [128]
    target: torch.Tensor  # [300 L] the recording, at the copy's loudness
    seconds: float
    anchor: torch.Tensor | None = None  # [300 L] what the base head made of these features
    text: str = ""  # what the recording says (for the intelligibility guard)


def _base(vocoder: StudentVocoder, f: Features) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The frozen front's output (run once per example) and what the untuned head makes of it."""
    with torch.no_grad():
        feats, source = vocoder.front(
            *(torch.from_numpy(np.ascontiguousarray(a)) for a in (f.asr, f.f0, f.energy, f.timbre))
        )
        audio = vocoder.head(feats, source, torch.from_numpy(f.timbre))[0]
    return feats[0], source.reshape(-1), audio


def rehearse(vocoder: StudentVocoder, features: Features, text: str = "") -> Example:
    """The synthesizer's own features and what the base head (before any tuning) makes of them:
    mixed into training so the parent's timbre is learned without unlearning clear speech."""
    feats, source, audio = _base(vocoder, features)
    timbre = torch.from_numpy(features.timbre[0])
    return Example(feats, source, timbre, audio, len(audio) / 24_000, None, text)


def prepare(vocoder: StudentVocoder, aligned: Aligned, text: str = "") -> Example:
    """Run the frozen front once; the target is the recording at the copy's RMS (the loss compares spectra)."""
    f = aligned.features
    feats, source, copy = _base(vocoder, f)
    gain = float(copy.pow(2).mean().sqrt()) / max(float(np.sqrt((aligned.audio**2).mean())), 1e-6)
    target = torch.from_numpy((aligned.audio * gain).astype(np.float32))
    seconds = len(aligned.audio) / 24_000
    return Example(feats, source, torch.from_numpy(f.timbre[0]), target, seconds, copy, text)


def batch(examples: list[Example], size: int, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
    """`size` random 0.8 s segments (a whole example where it is shorter than one): features,
    source, timbre, target, and (when every example has one) the base head's anchor audio."""
    picks = [examples[int(i)] for i in rng.integers(0, len(examples), size)]
    length = min(SEGMENT, min(e.features.shape[1] for e in picks))
    starts = [int(rng.integers(0, max(1, e.features.shape[1] - length + 1))) for e in picks]
    pairs = list(zip(picks, starts, strict=True))
    return (
        torch.stack([e.features[:, s : s + length] for e, s in pairs]),
        torch.stack([e.source[s * HOP : (s + length) * HOP] for e, s in pairs]),
        torch.stack([e.timbre for e in picks]),
        torch.stack([e.target[s * HOP : (s + length) * HOP] for e, s in pairs]),
        *(
            [torch.stack([e.anchor[s * HOP : (s + length) * HOP] for e, s in pairs])]  # type: ignore[index]
            if all(e.anchor is not None for e in picks)
            else []
        ),
    )


def spectral(head: torch.nn.Module, data: tuple[torch.Tensor, ...]) -> torch.Tensor:
    out = losses(head, data)
    return out["sc"] + out["mag"] + out["mel"]


def content(audio: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """How much the words moved: L1 between log mels with each band's mean over time removed.

    A band's mean is the static colour of a voice (and of a microphone): free to change. What
    is left is how the spectrum moves from sound to sound: the words, which the parent's
    recordings (aligned to a stock rendering frame by frame, not sound by sound) would blur."""
    window = torch.hann_window(1024)
    mels = _mel_matrix(1024, 80)

    def moving(x: torch.Tensor) -> torch.Tensor:
        log = torch.log(mels @ torch.stft(x, 1024, 256, window=window, return_complex=True).abs() + 1e-5)
        return log - log.mean(dim=-1, keepdim=True)

    return (moving(audio) - moving(anchor)).abs().mean()


def held_out_loss(head: torch.nn.Module, examples: list[Example]) -> float:
    """Mean spectral loss over whole held-out utterances: the number early stopping watches."""
    head.eval()
    with torch.no_grad():
        scores = [
            float(spectral(head, (e.features[None], e.source[None], e.timbre[None], e.target[None]))) for e in examples
        ]
    return float(np.mean(scores))


@dataclass
class Tuned:
    """What fine-tuning made: the pack's delta (from the best held-out step) and its record."""

    delta: dict[str, np.ndarray]
    steps: int
    best_step: int
    held_out_start: float
    held_out_best: float
    stopped: str
    seconds: float
    error_start: float = 0.0
    error: float = 0.0
    """Whisper's error rate on the held-out copies at the start and at the shipped step."""
    history: list[tuple[int, float, float, float]] = field(default_factory=list)
    """(step, training loss, held-out loss, held-out Whisper error) at each check."""


def _digest(examples: list[Example], settings: TuneSettings) -> str:
    h = hashlib.sha256(settings.model_dump_json(exclude={"max_steps"}).encode())  # a longer run resumes
    for e in examples:
        h.update(e.target.numpy().tobytes())
    return h.hexdigest()[:16]


def tune(
    vocoder: StudentVocoder,
    train: list[Example],
    held: list[Example],
    budget_seconds: float,
    checkpoint: Path,
    settings: TuneSettings | None = None,
    progress: Progress = print,
    rehearsal: list[Example] | None = None,
    judge: Callable[[torch.nn.Module], float] | None = None,
) -> Tuned:
    """Fine-tune `vocoder.head` (in place) on `train`, stopping on `held`; resumes from `checkpoint`.
    `rehearsal`: the base head's own speech (`rehearse`), learned alongside with every loss term.
    `judge`: the held-out copies' Whisper error rate; a step may ship only while it stays within
    `settings.guard` of the start's."""
    settings = settings or TuneSettings()
    head = vocoder.head
    params = lora.attach(head, settings.rank, settings.seed, settings.parts)
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    digest = _digest(train + held, settings)
    state: dict[str, Any] = {"step": 0, "seconds": 0.0, "history": [], "best": None, "best_step": 0, "best_loss": None}
    if checkpoint.exists():
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if saved.get("digest") == digest:
            head.load_state_dict(saved["trainable"], strict=False)
            optimizer.load_state_dict(saved["optimizer"])
            state = saved["state"]
            progress(f"vocoder adaptation: resuming at step {state['step']}")
    if state["best_loss"] is None:
        state["best_loss"] = state["start"] = held_out_loss(head, held)
        state["best"] = lora.delta(head)
        state["error_start"] = state["error"] = judge(head) if judge else 0.0
    rng = np.random.default_rng(settings.seed + state["step"])
    began = time.monotonic() - state["seconds"]
    stopped, recent = "step limit", 0.0
    while state["step"] < settings.max_steps:
        if state["step"] and _out_of_time(state, began, budget_seconds):
            stopped = "time budget"
            break
        head.train()
        data = batch(train, settings.batch, rng)
        out = losses(head, data[:4])
        loss = out["sc"] + out["mag"] + out["mel"]
        if settings.content and len(data) == 5:
            loss = loss + settings.content * content(out["audio"], data[4])
        if rehearsal and settings.rehearsal:
            loss = loss + settings.rehearsal * losses(head, batch(rehearsal, settings.batch, rng))["total"]
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        state["step"] += 1
        recent = 0.9 * recent + 0.1 * loss.item() if recent else loss.item()
        last = state["step"] == settings.max_steps or _out_of_time(state, began, budget_seconds)
        if state["step"] % settings.eval_every == 0 or last:
            held_loss = held_out_loss(head, held)
            error = judge(head) if judge else 0.0
            state["history"].append((state["step"], recent, held_loss, error))
            if held_loss < state["best_loss"] and error <= state["error_start"] + settings.guard:
                state.update(best=lora.delta(head), best_step=state["step"], best_loss=held_loss, error=error)
            state["seconds"] = time.monotonic() - began
            save_checkpoint(
                checkpoint,
                {
                    "digest": digest,
                    "trainable": lora.trainable_state(head),
                    "optimizer": optimizer.state_dict(),
                    "state": state,
                },
            )
            progress(
                f"vocoder adaptation: step {state['step']}/{settings.max_steps}, training loss {recent:.3f}, "
                f"held-out loss {held_loss:.3f}"
                + (f", Whisper error {error:.0%}" if judge else "")
                + f" (start {state['start']:.3f}, best {state['best_loss']:.3f} at step {state['best_step']}), "
                f"{state['seconds']:.0f}/{budget_seconds:.0f} s"
            )
            if state["step"] - state["best_step"] >= settings.patience * settings.eval_every:
                stopped = f"no better held-out loss in {settings.patience * settings.eval_every} steps"
                break
    return Tuned(
        delta=state["best"],
        steps=state["step"],
        best_step=state["best_step"],
        held_out_start=state["start"],
        held_out_best=state["best_loss"],
        stopped=stopped,
        seconds=time.monotonic() - began,
        error_start=state["error_start"],
        error=state["error"],
        history=state["history"],
    )


def _out_of_time(state: dict, began: float, budget_seconds: float) -> bool:
    """The next step would end past the budget: check and keep what this one learned first."""
    elapsed = time.monotonic() - began
    return elapsed + elapsed / max(state["step"], 1) > budget_seconds
