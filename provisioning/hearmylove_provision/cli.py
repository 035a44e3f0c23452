"""`provision`: build the image, write identities, flash cards, apply first boot, boot-test in qemu."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from hearmylove.errors import HearMyLoveError

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "image.toml"


class ProgressLine:
    """Stage names and percentages on stderr: rewritten in place on a terminal, a line per 10% otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last: tuple[str, int] = ("", -1)
        self.started = time.monotonic()

    def __call__(self, stage: str, fraction: float) -> None:
        percent = int(fraction * 100)
        step = 1 if self.tty else 10
        if (stage, percent // step) == (self.last[0], self.last[1] // step):
            return
        self.last = (stage, percent)
        text = f"[{time.monotonic() - self.started:6.0f}s] {stage:<10} {percent:3d}%"
        sys.stderr.write(("\r" + text + ("\n" if percent >= 100 else "")) if self.tty else text + "\n")
        sys.stderr.flush()


def _identity_check(args: argparse.Namespace) -> int:
    from .identity import bundle, load

    identity = load(args.identity)
    files = bundle(identity)
    print(f"{args.identity}: valid identity for {identity.device_id} ({', '.join(sorted(files))})")
    return 0


def _identity_write(args: argparse.Namespace) -> int:
    from .identity import load, write_to

    identity = load(args.identity)
    target = args.image or args.device
    names = write_to(target, identity)
    print(f"identity of {identity.device_id} written to {target} (FAT /hearmylove: {', '.join(names)})")
    return 0


def _flash(args: argparse.Namespace) -> int:
    from .flash import check_target, flash
    from .identity import load, write_to

    identity = load(args.identity)  # first: a bad identity is refused before the disk is touched
    target = check_target(args.device, args.image, force=args.force, to_file=args.to_file)
    digest = flash(args.image, target, ProgressLine())
    write_to(args.device, identity)
    print(f"{args.device}: image written and verified (sha256 {digest[:16]}), identity of {identity.device_id} added")
    return 0


def _firstboot(args: argparse.Namespace) -> int:
    from .firstboot import apply

    apply(args.root)
    return 0


def _build(args: argparse.Namespace) -> int:
    from .image import build

    image = build(args.config, args.out, args.work, ProgressLine(), keep_root=args.keep_root)
    print(f"image: {image} ({image.stat().st_size >> 20} MiB)")
    return 0


def _boot_test(args: argparse.Namespace) -> int:
    from .bootcheck import boot_test

    seconds = boot_test(
        args.image, work=args.work, timeout=args.timeout, progress=ProgressLine(), voice_pack=not args.no_voice_pack
    )
    print(f"boot test passed: {args.image} booted, applied its identity and came online in {seconds:.0f} s")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="provision", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="build the SD image (arm64 Debian, Raspberry Pi 4) from image.toml")
    b.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    b.add_argument("--out", type=Path, default=Path("/work/build/hearmylove.img"))
    b.add_argument("--work", type=Path, default=None, help="scratch folder (default: beside --out)")
    b.add_argument("--keep-root", action="store_true", help="keep the root tree after building (debugging)")
    b.set_defaults(run=_build)

    ident = sub.add_parser("identity", help="check an identity file, or write it onto an image or card")
    isub = ident.add_subparsers(dest="action", required=True)
    c = isub.add_parser("check", help="validate an identity file")
    c.add_argument("identity", type=Path)
    c.set_defaults(run=_identity_check)
    w = isub.add_parser("write", help="write the identity onto a flashed card's or image's FAT partition")
    where = w.add_mutually_exclusive_group(required=True)
    where.add_argument("--image", type=Path)
    where.add_argument("--device", type=Path)
    w.add_argument("--identity", type=Path, required=True)
    w.set_defaults(run=_identity_write)

    f = sub.add_parser("flash", help="write the image to a card, verify it, then write the identity")
    f.add_argument("--image", type=Path, required=True)
    f.add_argument("--device", type=Path, required=True, help="the whole card: /dev/sdX or /dev/mmcblkN (see lsblk)")
    f.add_argument("--identity", type=Path, required=True)
    f.add_argument("--force", action="store_true", help="allow a disk that does not report itself removable")
    f.add_argument(
        "--to-file", action="store_true", help="--device is a regular file to write the image into (not under /dev)"
    )
    f.set_defaults(run=_flash)

    fb = sub.add_parser("firstboot", help="(on the speaker) apply the identity from the FAT partition once")
    fb.add_argument("--root", type=Path, default=Path("/"))
    fb.set_defaults(run=_firstboot)

    t = sub.add_parser("boot-test", help="boot the image in qemu and wait for the daemon to come online")
    t.add_argument("--image", type=Path, required=True)
    t.add_argument("--work", type=Path, default=None)
    t.add_argument("--timeout", type=float, default=3600.0)
    t.add_argument("--no-voice-pack", action="store_true", help="leave the voice pack out of the test identity")
    t.set_defaults(run=_boot_test)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return int(args.run(args))
    except (HearMyLoveError, OSError) as exc:
        print(f"provision: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("provision: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
