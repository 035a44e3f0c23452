"""`hearmylove` command line: `run` the speaker daemon, `demo` the whole path on this machine,
`say` a story into a file, list the stock `voices`, print the protocol's `schema`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from .errors import HearMyLoveError
from .text.frontend import LANGUAGES

if TYPE_CHECKING:
    from .engine.config import EngineConfig
    from .engine.voices import Voice

log = logging.getLogger("hearmylove")

_OUT_FORMATS = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "OPUS"),
    ".opus": ("OGG", "OPUS"),
}


def _read_text(args: argparse.Namespace) -> str:
    if args.file:
        raw = Path(args.file).read_bytes()
    elif args.text == "-":
        raw = sys.stdin.buffer.read()
    else:
        return str(args.text)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HearMyLoveError(
            f"the story is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
        ) from exc


def _progress(message: str) -> None:
    print(f"hearmylove: {message}", file=sys.stderr, flush=True)


def _pack_voice(args: argparse.Namespace, config: EngineConfig) -> Voice | None:
    """A voice pack given as --voice is verified (signature, hashes, base model) before it speaks."""
    path = Path(args.voice) if args.voice else None
    if path is None or not (path.suffix == ".tar" or (path / "manifest.json").is_file()):
        return None
    from .basemodel import read_manifest
    from .engine.engine import ensure_models
    from .engine.vocoders import installed_student
    from .voicepack import load_public_key, open_pack

    if not args.trust:
        raise HearMyLoveError(f"{path} is a voice pack: name the studio's public key with --trust studio.pub")
    keys = [load_public_key(Path(p).read_text()) for p in args.trust]
    ensure_models(config)
    base = str(read_manifest(config.model_dir)["base_model_sha256"])
    _, voice = open_pack(path, keys, base, student=installed_student(config.model_dir))
    return voice


def cmd_say(args: argparse.Namespace) -> int:
    """`say`: synthesize a story into a WAV, FLAC or Opus file."""
    from .engine.config import EngineConfig
    from .engine.engine import SAMPLE_RATE, Engine

    out = Path(args.out)
    if out.suffix.lower() not in _OUT_FORMATS:
        raise HearMyLoveError(f"output {str(out)!r} must end in one of {', '.join(_OUT_FORMATS)}")
    text = _read_text(args)
    overrides = {"threads": args.threads, "english": args.english, "vocoder": args.vocoder}
    if args.model_dir:
        overrides["model_dir"] = Path(args.model_dir)
    config = EngineConfig(**{k: v for k, v in overrides.items() if v is not None})
    started = time.perf_counter()
    engine = Engine.load(config)
    chunks = engine.stream(text, voice=_pack_voice(args, config) or args.voice, lang=args.lang, speed=args.speed)
    container, subtype = _OUT_FORMATS[out.suffix.lower()]
    samples = 0
    first: float | None = None
    partial = out.with_name(out.name + ".partial")
    with sf.SoundFile(partial, "w", SAMPLE_RATE, 1, subtype=subtype, format=container) as f:
        for chunk in chunks:
            if first is None:
                first = time.perf_counter() - started
            f.write(np.clip(chunk, -1.0, 1.0))
            samples += len(chunk)
            if not args.quiet and sys.stderr.isatty():
                print(f"\rhearmylove: {samples / SAMPLE_RATE:7.1f} s of speech", end="", file=sys.stderr)
    partial.replace(out)
    elapsed = time.perf_counter() - started
    seconds = samples / SAMPLE_RATE
    if not args.quiet:
        print(
            f"\rhearmylove: wrote {out} ({seconds:.1f} s of speech in {elapsed:.1f} s, "
            f"first audio after {first or 0:.2f} s)",
            file=sys.stderr,
        )
    return 0


def cmd_voices(args: argparse.Namespace) -> int:
    """`voices`: the stock voices and the default per language."""
    from .basemodel import VOICES_FILE
    from .engine.config import EngineConfig
    from .engine.engine import ensure_models
    from .engine.voices import DEFAULT_VOICES, VoiceBank

    config = EngineConfig()
    ensure_models(config)
    for voice in VoiceBank(config.model_dir / VOICES_FILE).ids:
        default_for = [lang for lang, v in DEFAULT_VOICES.items() if v == voice]
        print(voice + (f"  (default for {', '.join(default_for)})" if default_for else ""))
    return 0


def _log_setup(verbose: bool) -> None:
    """journald adds its own timestamps and levels; elsewhere show the time."""
    under_journal = bool(os.environ.get("JOURNAL_STREAM"))
    fmt = "%(levelname)s %(name)s: %(message)s" if under_journal else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=fmt, force=True)
    for noisy in ("phonemizer", "jieba", "faster_whisper"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def cmd_run(args: argparse.Namespace) -> int:
    """`run`: the daemon, until SIGTERM or SIGINT (how systemd runs the speaker)."""
    from . import config as config_module
    from .daemon import Daemon

    _log_setup(args.verbose)
    config = config_module.load(Path(args.config))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    Daemon(config).run(stop)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """`demo`: a local broker, the daemon and a parent telling one story."""
    from .demo import run_demo

    text = _read_text(args)
    return run_demo(text, Path(args.out) if args.out else None, lang=args.lang, timeout=args.timeout)


def cmd_schema(args: argparse.Namespace) -> int:
    """`schema`: the protocol's JSON Schema on standard output."""
    import json

    from .protocol import json_schema

    print(json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `hearmylove` command line and its subcommands."""
    parser = argparse.ArgumentParser(prog="hearmylove", description="Stories in a parent's voice.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    say = sub.add_parser("say", help="speak a story into an audio file")
    say.add_argument("text", nargs="?", default=None, help="the story text, or - to read standard input")
    say.add_argument("--file", help="read the story from this UTF-8 file")
    say.add_argument(
        "--voice",
        default=None,
        help="stock voice id, a .npy style file, or a voice pack (.tar or folder; needs --trust) "
        "(default: the clearest stock voice for the language)",
    )
    say.add_argument("--trust", action="append", default=[], help="studio public key file for a --voice pack")
    say.add_argument("--lang", default="auto", choices=LANGUAGES, help="story language (default: auto-detect)")
    say.add_argument("--speed", type=float, default=1.0, help="speaking rate, 0.5 to 2.0")
    say.add_argument("--out", required=True, help="output file: .wav, .flac, .ogg or .opus")
    say.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default 2)")
    say.add_argument("--english", choices=("espeak", "misaki"), default=None, help="English G2P back end")
    say.add_argument(
        "--vocoder", choices=("qdq", "int8", "student"), default=None, help="vocoder (default qdq; docs/vocoder.md)"
    )
    say.add_argument("--model-dir", default=None, help="exported base models (default: the data folder)")
    say.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    say.set_defaults(func=cmd_say)

    run = sub.add_parser("run", help="run the speaker daemon")
    run.add_argument("--config", default="/etc/hearmylove/config.toml", help="the TOML config file")
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="the whole path here: local broker, daemon, parent, a story told")
    demo.add_argument("text", nargs="?", default=None, help="the story (or use --text / --file)")
    demo.add_argument("--text", dest="text_opt", default=None, help="the story text")
    demo.add_argument("--file", help="read the story from this UTF-8 file")
    demo.add_argument("--lang", default="auto", choices=LANGUAGES)
    demo.add_argument("--out", help="write what PortAudio played into this WAV instead of the sound card")
    demo.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    demo.set_defaults(func=cmd_demo)

    schema = sub.add_parser("schema", help="print the JSON Schema of the MQTT protocol (for the web app)")
    schema.set_defaults(func=cmd_schema)

    voices = sub.add_parser("voices", help="list the voices this speaker has")
    voices.set_defaults(func=cmd_voices)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (2 with a one-line message for a HearMyLoveError
    or an OSError, 130 on Ctrl-C)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.command == "demo" and args.text_opt is not None:
        args.text = args.text_opt
    if args.command == "demo" and args.text is None and not args.file:
        args.text = "Once upon a time, a little fox found a shiny red apple. He shared it with his friend the rabbit."
    if args.command == "say" and args.text is None and not args.file:
        parser.error("say needs TEXT, - (standard input) or --file")
    try:
        return int(args.func(args))
    except HearMyLoveError as exc:
        print(f"hearmylove: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"hearmylove: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
