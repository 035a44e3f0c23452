"""A parent's adapted vocoder: the studio's low-rank delta, the pack that carries it, the speaker's
merge at install, and the engine speaking through it; the fine-tuning loop that makes it."""

from __future__ import annotations

import csv
import io
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hearmylove.engine import adapted  # noqa: E402
from hearmylove.engine.engine import Engine  # noqa: E402
from hearmylove.engine.vocoders import student_build  # noqa: E402
from hearmylove.engine.voices import Voice  # noqa: E402
from hearmylove.errors import VoicePackError  # noqa: E402
from hearmylove.voicepack import AdaptedVocoder, Consent  # noqa: E402
from hearmylove.voicestore import VoiceStore  # noqa: E402
from voicelab.adapt import lora  # noqa: E402
from voicelab.adapt.align import align, read_recording  # noqa: E402
from voicelab.adapt.measure import EVALSET  # noqa: E402
from voicelab.adapt.tune import TuneSettings, prepare, tune  # noqa: E402
from voicelab.adapt.vocoder import load_built_head, load_vocoder  # noqa: E402
from voicelab.pack import build_pack, generate_key  # noqa: E402
from voicelab.student import StudentHead  # noqa: E402

CONSENT = Consent(
    recorded_by="Li Na (mother)",
    recorded_at=datetime(2026, 11, 1, tzinfo=UTC),
    device_id="kid-001",
    statement="I agree that this speaker tells my child stories in my voice.",
)


def _nudged(head: StudentHead, seed: int = 1, size: float = 0.02) -> dict[str, np.ndarray]:
    """A delta as fine-tuning would leave it: every factor and vector moved a little."""
    lora.attach(head, rank=8, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in head.parameters():
            if param.requires_grad:
                param.add_(size * torch.randn(param.shape, generator=generator))
    return lora.delta(head)


def test_the_speakers_numpy_merge_is_the_studios_parametrized_head() -> None:
    head = StudentHead(dim=32, layers=2, kernel=5, mult=2)
    base = {name: value.detach().numpy().copy() for name, value in head.state_dict().items()}
    delta = _nudged(head)
    assert any(k.endswith(".lora_a") for k in delta) and "blocks.0.dwconv.weight" in delta
    merged = adapted.merge(base, delta)
    live = {name: module.weight for name, module in head.named_modules() if hasattr(module, "parametrizations")}
    assert set(live) <= {name.removesuffix(".weight") for name in merged}
    for name, weight in live.items():
        np.testing.assert_allclose(merged[f"{name}.weight"], weight.detach().numpy(), rtol=1e-5, atol=1e-6)
        assert not np.allclose(merged[f"{name}.weight"], base[f"{name}.weight"])  # it did move
    np.testing.assert_array_equal(merged["norm.bias"], head.norm.bias.detach().numpy())


def test_a_delta_that_does_not_fit_the_head_is_refused_by_name() -> None:
    head = StudentHead(dim=32, layers=1, kernel=5, mult=2)
    base = {name: value.detach().numpy() for name, value in head.state_dict().items()}
    delta = _nudged(head)
    with pytest.raises(VoicePackError, match="'blocks.7.up.weight'"):
        adapted.merge(base, {**delta, "blocks.7.up.weight.lora_a": delta["out.weight.lora_a"]})
    with pytest.raises(VoicePackError, match="norm.bias is"):
        adapted.merge(base, {**delta, "norm.bias": np.zeros(5, np.float32)})
    with pytest.raises(VoicePackError, match="without its .lora_a"):
        adapted.merge(base, {k: v for k, v in delta.items() if k != "out.weight.lora_a"})
    wide = np.zeros((adapted.MAX_RANK + 1, 32), np.float32)
    with pytest.raises(VoicePackError, match="do not pair up"):
        adapted.merge(base, {**delta, "out.weight.lora_a": wide})


def test_a_delta_file_that_is_not_numbers_is_refused(tmp_path: Path) -> None:
    path = tmp_path / adapted.DELTA_FILE
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(VoicePackError, match="not a NumPy .npz"):
        adapted.read_delta(path)
    np.savez(path, **{"out.bias": np.array([1.0, np.nan], np.float32)})
    with pytest.raises(VoicePackError, match="finite"):
        adapted.read_delta(path)
    np.savez(path, **{"out.bias": np.array([1, 2], np.int64)})
    with pytest.raises(VoicePackError, match="float16/float32"):
        adapted.read_delta(path)


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> dict:
    """A studio key, a real delta on the speaker's built head, and a signed pack carrying it."""
    tmp = tmp_path_factory.mktemp("adapted")
    key = tmp / "studio.key"
    pub = generate_key(key)
    head, head_sha = load_built_head(model_dir)
    delta = _nudged(head)
    described = AdaptedVocoder(base_head_sha256=head_sha, rank=8, steps=10, speech_seconds=42.0)
    style = np.load(model_dir / "voices.npz")["jf_alpha"][100]
    pack = tmp / "mama.tar"
    build_pack(style, "mama", "Mama", ["en"], CONSENT, {}, model_dir, key, pack, vocoder=(described, delta))
    return {"key": key, "pub": pub.read_text(), "pack": pack, "head": head, "described": described, "delta": delta}


def _store(folder: Path, studio: dict, engine: Engine, student: object) -> VoiceStore:
    from hearmylove.basemodel import read_manifest

    base = str(read_manifest(engine.config.model_dir)["base_model_sha256"])
    return VoiceStore(folder, [studio["pub"]], base, engine.voice, CONSENT.device_id, student)  # type: ignore[arg-type]


def _b64(path: Path) -> str:
    import base64

    return base64.b64encode(path.read_bytes()).decode()


def test_the_speaker_merges_the_pack_once_and_speaks_in_the_studios_vocoder(
    studio: dict, engine: Engine, model_dir: Path, tmp_path: Path
) -> None:
    assert studio["pack"].stat().st_size < 2 << 20  # a rank-8 delta on the whole head: well under 10 MB
    store = _store(tmp_path / "voices", studio, engine, student_build(model_dir))
    manifest = store.install(_b64(studio["pack"]))
    assert manifest.vocoder == studio["described"]
    voice = store.resolve("mama", "en")
    assert voice.vocoder is not None and voice.vocoder.parent == tmp_path / "voices" / "mama"
    plain = Voice("mama", voice.styles)
    assert voice.digest != plain.digest  # cached renders follow the vocoder too

    features = engine.features(next(engine.frontend.utterances("Good night, my love.", "en")).phonemes, voice)
    spoken, base = engine.vocode_whole(features, voice), engine.vocode_whole(features, plain)
    torch_vocoder = load_vocoder(model_dir)
    torch_vocoder.head = studio["head"]  # the studio's parametrized head: what was trained
    with torch.no_grad():
        inputs = [torch.from_numpy(np.ascontiguousarray(a)) for a in (features.asr, features.f0, features.energy)]
        trained = torch_vocoder(*inputs, torch.from_numpy(features.timbre))[0].numpy()
    n = min(len(spoken), len(trained))
    assert np.sqrt(np.mean((spoken[:n] - trained[:n]) ** 2)) < 0.1 * np.sqrt(np.mean(trained[:n] ** 2))
    assert np.sqrt(np.mean((base[:n] - trained[:n]) ** 2)) > 0.3 * np.sqrt(np.mean(trained[:n] ** 2))


def test_an_adapted_pack_for_another_head_or_a_speaker_without_a_student_is_refused(
    studio: dict, engine: Engine, model_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(VoicePackError, match="no student vocoder built; build it"):
        _store(tmp_path / "a", studio, engine, None).install(_b64(studio["pack"]))
    other = student_build(model_dir).model_copy(update={"head_sha256": "0" * 64})
    with pytest.raises(VoicePackError, match=r"adapts the student head \w{16}, this speaker runs 0000000000000000"):
        _store(tmp_path / "b", studio, engine, other).install(_b64(studio["pack"]))
    assert not [p for p in (tmp_path / "b").iterdir()]  # nothing half-installed is left


def test_a_tampered_vocoder_delta_is_refused(studio: dict, engine: Engine, model_dir: Path, tmp_path: Path) -> None:
    out = io.BytesIO()
    with tarfile.open(studio["pack"]) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == adapted.DELTA_FILE:
                data = data[:-64] + bytes(64)
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    tampered = tmp_path / "tampered.tar"
    tampered.write_bytes(out.getvalue())
    with pytest.raises(VoicePackError, match="tampered file 'vocoder.npz'"):
        _store(tmp_path / "voices", studio, engine, student_build(model_dir)).install(_b64(tampered))


def _utterances(speaker: str, count: int) -> list[dict[str, str]]:
    with open(EVALSET / "manifest.csv", encoding="utf-8") as f:
        rows = sorted((r for r in csv.DictReader(f) if r["speaker"] == speaker), key=lambda r: float(r["seconds"]))
    return rows[:count]


def test_fine_tuning_learns_the_recording_and_resumes_from_its_checkpoint(
    engine: Engine, model_dir: Path, tmp_path: Path
) -> None:
    (row,) = _utterances("p225", 1)
    audio, rate = read_recording(EVALSET / row["path"])
    vocoder = load_vocoder(model_dir)
    example = prepare(vocoder, align(engine, audio, rate, row["transcript"], "en", engine.voice("jf_alpha")))
    settings = TuneSettings(rank=4, lr=5e-3, max_steps=20, eval_every=10, patience=5)
    messages: list[str] = []
    first = tune(vocoder, [example], [example], 3600, tmp_path / "ckpt.pt", settings, messages.append)
    assert first.steps == 20 and first.best_step > 0
    assert first.held_out_best < first.held_out_start  # the head moved towards this reader's spectrum
    assert set(first.delta) == set(lora.delta(vocoder.head))

    again = load_vocoder(model_dir)
    longer = settings.model_copy(update={"max_steps": 30})
    resumed = tune(again, [example], [example], 3600, tmp_path / "ckpt.pt", longer, messages.append)
    assert "vocoder adaptation: resuming at step 20" in messages and resumed.steps == 30


def test_the_content_term_frees_a_voices_colour_and_holds_its_words() -> None:
    from voicelab.adapt.tune import content

    rng = np.random.default_rng(0)
    t = np.arange(24_000) / 24_000
    words = np.sin(2 * np.pi * (200 + 300 * (t > 0.5)) * t) * (0.2 + 0.8 * (t % 0.25 < 0.12))  # two "sounds"
    speech = torch.from_numpy((words + 0.01 * rng.standard_normal(len(t))).astype(np.float32))
    coloured = torch.from_numpy(np.convolve(speech.numpy(), [0.6, 0.3, 0.1], mode="same").astype(np.float32))
    blurred = torch.from_numpy(np.convolve(speech.numpy(), np.ones(2400) / 2400, mode="same").astype(np.float32))
    reordered = torch.roll(speech, 12_000)
    colour, blur, order = (float(content(x[None], speech[None])) for x in (coloured, blurred, reordered))
    assert colour < 0.2 * blur and colour < 0.2 * order


def test_a_step_whisper_understands_less_never_ships(engine: Engine, model_dir: Path, tmp_path: Path) -> None:
    (row,) = _utterances("p225", 1)
    audio, rate = read_recording(EVALSET / row["path"])
    vocoder = load_vocoder(model_dir)
    example = prepare(vocoder, align(engine, audio, rate, row["transcript"], "en", engine.voice("jf_alpha")))
    calls = iter([0.05, 0.10, 0.50, 0.60])  # the start, then checks at steps 5, 10, 15
    settings = TuneSettings(rank=4, lr=5e-3, max_steps=15, eval_every=5, patience=5, guard=0.1)
    tuned = tune(
        vocoder, [example], [example], 3600, tmp_path / "c.pt", settings, lambda m: None, None, lambda h: next(calls)
    )
    assert tuned.best_step == 5 and tuned.error == 0.10 and tuned.error_start == 0.05
    assert [row[3] for row in tuned.history] == [0.10, 0.50, 0.60]
