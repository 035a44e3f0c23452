"""`hearmylove-remote voice ...`: the parent's voice on the speaker, from a terminal.

install (send a signed pack from the studio, with progress), list, use (choose the voice for
stories without their own) and rollback (the version a new pack replaced).
"""

from __future__ import annotations

import argparse
import base64
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from hearmylove.errors import HearMyLoveError
from hearmylove.protocol import MAX_MESSAGE_BYTES, Reply, VoiceInfo
from hearmylove.remote import Progress, Remote

INSTALL_TIMEOUT = 180.0
"""A Pi checks a pack's signature and hashes and flushes it to the SD card: give it time."""


def describe(voice: VoiceInfo) -> str:
    """One line a parent reads: whose voice, given when, for which speaker."""
    marks = [" (active)" if voice.active else "", ", previous version kept" if voice.previous else ""]
    return (
        f"{voice.display_name} ({voice.voice_id}): recorded by {voice.recorded_by} on "
        f"{voice.recorded_at:%Y-%m-%d} for speaker {voice.device_id}{''.join(marks)}"
    )


def progress_printer(out: TextIO) -> Callable[[Progress], None]:
    """Progress on stderr: one line when sending, then the seconds waited (redrawn on a terminal)."""
    said: set[str] = set()
    redraw = out.isatty()

    def show(step: Progress) -> None:
        if step.stage == "sending":
            print(f"sending the pack ({step.size / (1 << 20):.1f} MiB) ...", file=out, flush=True)
        elif redraw:
            print(f"\rsent; the speaker is checking the pack ... {step.elapsed:.0f} s", end="", file=out, flush=True)
        elif step.stage not in said:
            print("sent; the speaker is checking the pack ...", file=out, flush=True)
        said.add(step.stage)

    return show


def pack_field(path: Path) -> str:
    """The pack, base64 for the JSON command; refused here if the broker would refuse it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise HearMyLoveError(f"cannot read the voice pack {str(path)!r}: {exc.strerror}") from None
    encoded = base64.b64encode(data).decode()
    if len(encoded) > MAX_MESSAGE_BYTES - 4096:
        raise HearMyLoveError(
            f"{path.name} is {len(data) / (1 << 20):.1f} MiB; a voice pack sent over MQTT must stay under "
            f"{(MAX_MESSAGE_BYTES - 4096) * 3 / 4 / (1 << 20):.1f} MiB"
        )
    return encoded


def install_fields(pack: Path, activate: bool = True) -> dict[str, Any]:
    """The voice.install command's fields for a pack file."""
    return {"pack": pack_field(pack), "activate": activate}


def install(
    remote: Remote, device: str, pack: Path, activate: bool = True, progress: Callable[[Progress], None] | None = None
) -> Reply:
    """Send a signed pack to a speaker and wait for its verdict (the CLI and the studio service)."""
    return remote.send(
        device, "voice.install", timeout=INSTALL_TIMEOUT, progress=progress, **install_fields(pack, activate)
    )


def _request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    if args.voice_action == "install":
        return "voice.install", install_fields(Path(args.pack), activate=not args.keep_active)
    if args.voice_action == "use":
        if (args.voice is None) == (not args.stock):
            raise HearMyLoveError("voice use needs a voice id, or --stock for the speaker's own voice")
        return "voice.select", {"voice": args.voice}
    if args.voice_action == "rollback":
        return "voice.rollback", {"voice_id": args.voice} if args.voice else {}
    return "voice.list", {}


def _print_result(action: str, reply: Reply) -> None:
    result = reply.result
    if action == "list":
        for voice in result["voices"]:
            print(describe(VoiceInfo.model_validate(voice)))
        if not result["voices"]:
            print("no voice packs installed")
        print(f"active voice: {result['active_voice'] or 'the speaker’s own (stock) voice'}")
    elif action == "use":
        print(f"active voice: {result['active_voice'] or 'the speaker’s own (stock) voice'}")
    else:
        verb = "installed" if action == "install" else "back to the earlier version of"
        print(f"{verb} {describe(VoiceInfo.model_validate(result))}")


def run(args: argparse.Namespace, connect: Callable[[argparse.Namespace], Remote]) -> int:
    name, fields = _request(args)
    shown = progress_printer(sys.stderr) if name == "voice.install" else None
    timeout = max(args.timeout, INSTALL_TIMEOUT) if name == "voice.install" else args.timeout
    with connect(args) as remote:
        reply = remote.send(args.device, name, timeout=timeout, progress=shown, **fields)
    if shown is not None and sys.stderr.isatty():
        print(file=sys.stderr)
    if args.json:
        print(reply.model_dump_json())
    elif reply.ok:
        _print_result(args.voice_action, reply)
    else:
        assert reply.error is not None
        print(f"refused ({reply.error.code}): {reply.error.message}", file=sys.stderr)
    return 0 if reply.ok else 1


def add_parser(sub: Any, options: Callable[[argparse.ArgumentParser], None], func: Callable[..., int]) -> None:
    """`voice install|list|use|rollback DEVICE ...` under the CLI's subcommands."""
    voice = sub.add_parser("voice", help="the parent's voice on the speaker: install, list, use, roll back")
    vsub = voice.add_subparsers(dest="voice_action", required=True)
    install = vsub.add_parser("install", help="send a voice pack from the studio (.tar) and make it active")
    install.add_argument("device", help="the speaker's device id")
    install.add_argument("pack", help="the signed voice pack (.tar) the studio made for this speaker")
    install.add_argument("--keep-active", action="store_true", help="install only; keep the active voice")
    listing = vsub.add_parser("list", help="the voices on the speaker: who recorded them, when, for which speaker")
    listing.add_argument("device", help="the speaker's device id")
    use = vsub.add_parser("use", help="tell stories without their own voice in this one")
    use.add_argument("device", help="the speaker's device id")
    use.add_argument("voice", nargs="?", help="an installed voice id (see: voice list)")
    use.add_argument("--stock", action="store_true", help="the speaker's own voice instead of a family voice")
    rollback = vsub.add_parser("rollback", help="go back to the version of a voice a new pack replaced")
    rollback.add_argument("device", help="the speaker's device id")
    rollback.add_argument("--voice", help="which voice (default: the active one)")
    for parser in vsub.choices.values():
        options(parser)
    voice.set_defaults(func=func)


__all__ = ["add_parser", "describe", "install", "run"]
