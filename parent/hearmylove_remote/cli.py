"""`hearmylove-remote`: everything the parent's web app does, from a terminal, plus the
installer's broker administration (families, parents, speakers).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hearmylove.errors import HearMyLoveError
from hearmylove.protocol import Reply
from hearmylove.remote import Remote

from . import pairing, voices
from .families import Broker


def _connect(args: argparse.Namespace) -> Remote:
    password = args.password or os.environ.get("HML_PASSWORD")
    if not args.user or not password:
        raise HearMyLoveError("give --user and --password (or set HML_PASSWORD)")
    return Remote(args.broker, args.port, args.user, password, tls=not args.no_tls, ca_file=args.ca).connect()


def _show(reply: Reply, as_json: bool) -> int:
    if as_json:
        print(reply.model_dump_json())
    elif reply.ok:
        print(json.dumps(reply.result, ensure_ascii=False, indent=2) if reply.result else "ok")
    else:
        assert reply.error is not None
        print(f"refused ({reply.error.code}): {reply.error.message}", file=sys.stderr)
    return 0 if reply.ok else 1


def _story_text(args: argparse.Namespace) -> str | None:
    if getattr(args, "file", None):
        return Path(args.file).read_text(encoding="utf-8")
    return getattr(args, "text", None)


def _slug(title: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40] or "story"
    return f"{base}-{secrets.token_hex(3)}"


def _put(args: argparse.Namespace) -> dict[str, Any]:
    text = _story_text(args)
    if not text:
        raise HearMyLoveError("put needs --text or --file")
    fields = {"story_id": args.story_id or _slug(args.title), "title": args.title, "text": text, "lang": args.lang}
    return fields | ({"voice": args.voice} if args.voice else {})


def _tell(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {"from_start": args.from_start}
    text = _story_text(args)
    if text:
        fields |= {"text": text, "title": args.title, "lang": args.lang}
        if args.voice:
            fields["voice"] = args.voice
    elif args.story_id:
        if args.voice:
            raise HearMyLoveError("--voice goes with --text or --file; a stored story keeps the voice it was put with")
        fields["story_id"] = args.story_id
    else:
        raise HearMyLoveError("tell needs --story-id, --text or --file")
    if args.at:
        fields["at"] = args.at
    return fields


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if args.max_volume is not None:
        settings["max_volume"] = args.max_volume
    if args.quiet:
        start, _, end = args.quiet.partition("-")
        settings["quiet_hours"] = {"start": start, "end": end}
    if args.sleep_timer is not None:
        settings["sleep_timer_minutes"] = args.sleep_timer
    if args.led is not None:
        settings["led_brightness"] = args.led
    return {"settings": settings, "clear_quiet_hours": args.no_quiet}


_COMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace], dict[str, Any]]]] = {
    "put": ("story.put", _put),
    "tell": ("story.tell", _tell),
    "delete": ("story.delete", lambda a: {"story_id": a.story_id}),
    "list": ("story.list", lambda a: {}),
    "pause": ("playback.pause", lambda a: {}),
    "resume": ("playback.resume", lambda a: {}),
    "stop": ("playback.stop", lambda a: {}),
    "next": ("playback.next", lambda a: {}),
    "volume": ("volume.set", lambda a: {"volume": a.volume}),
    "settings": ("settings.put", _settings),
    "ping": ("ping", lambda a: {}),
}
"""Subcommand -> (protocol command, its fields from the arguments)."""


def _command(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    name, fields = _COMMANDS[args.action]
    return name, fields(args)


def cmd_remote(args: argparse.Namespace) -> int:
    name, fields = _command(args)
    with _connect(args) as remote:
        reply = remote.send(args.device, name, timeout=args.timeout, **fields)
        code = _show(reply, args.json)
        if code == 0 and getattr(args, "wait", False):
            story_id = reply.result.get("story_id")
            while True:
                message = remote.wait_for("event", timeout=args.timeout, device_id=args.device)
                print(f"{message.name}: {json.dumps(message.payload, ensure_ascii=False)}")
                if message.name in ("story.finished", "story.stopped", "error") and (
                    message.payload.get("story_id") in (story_id, None)
                ):
                    return 0 if message.name == "story.finished" else 1
        return code


def cmd_watch(args: argparse.Namespace) -> int:
    with _connect(args) as remote:
        while True:
            try:
                message = remote.messages.get(timeout=args.timeout)
            except Exception:  # noqa: BLE001 - queue.Empty: nothing more within the timeout
                return 0
            payload = json.dumps(message.payload, ensure_ascii=False)
            print(f"{message.device_id} {message.kind} {message.name} {payload}".replace("  ", " "), flush=True)
            if args.until and message.name == args.until:
                return 0


def _show_pairings(broker: Broker, passwords: dict[str, str], qr: bool) -> None:
    """For each parent: the link that pairs their phone, its QR code here and as a PNG."""
    registry = broker.load()
    for name in sorted(set(passwords) & registry.parents()):
        link = broker.pairing_link(registry, name, passwords[name])
        png = pairing.write_png(link, broker.pairing_png(name))
        print(f"\n{name}: open this on the phone (or scan the code) to log in to the app:\n  {link}")
        if qr:
            pairing.print_qr(link, sys.stdout)
        print(f"  QR code: {png} (it holds the password: give it to {name} only, then delete it)")


def cmd_broker(args: argparse.Namespace) -> int:
    broker = Broker(Path(args.dir))
    if args.broker_action == "init":
        registry = broker.init(args.host, args.mqtt_port, args.wss_port, args.bind, app_url=args.app_url)
        print(
            f"broker set up in {args.dir} for {registry.host}: MQTT/TLS :{registry.mqtt_port}, "
            f"WebSockets/TLS :{registry.wss_port}; parents' pairing links open {registry.web_app}"
        )
        print(f"speakers and phones trust {Path(args.dir) / 'tls' / 'ca.crt'}")
        return 0
    if args.broker_action == "show":
        print(broker.describe())
        return 0
    if args.broker_action == "bridge":
        return _bridge(broker, args)
    if args.broker_action == "add-family":
        passwords = broker.add_family(args.family, args.parent, args.device)
    elif args.broker_action == "new-password":
        passwords = {args.name: broker.new_password(args.name)}
    elif args.broker_action == "add-studio":
        passwords = {args.name: broker.add_studio(args.name)}
    else:
        kind = "parent" if args.broker_action == "add-parent" else "device"
        passwords = {args.name: broker.add_member(args.family, args.name, kind)}
    fresh = "new passwords" if args.broker_action == "new-password" else "new accounts"
    print(f"{fresh} (shown once; give each to its person or speaker):")
    for name, password in passwords.items():
        print(f"  {name}\t{password}")
    _show_pairings(broker, passwords, qr=not getattr(args, "no_qr", False))
    if args.broker_action == "new-password" and args.name not in broker.load().parents():
        print(f"put the new password in {args.name}'s /etc/hearmylove/config.toml (mqtt.password) and restart it")
    if broker.reload():
        print("mosquitto reloaded")
    else:
        print(
            f"mosquitto is not running from {args.dir} (no live {broker.pid_file.name}); "
            "it reads the accounts when it starts"
        )
    return 0


def _bridge(broker: Broker, args: argparse.Namespace) -> int:
    from .bridge import Bridge, bridge_conf, fleet_acl

    password = args.password or os.environ.get("HML_BRIDGE_PASSWORD")
    if not password:
        raise HearMyLoveError("give the bridge account's password with --password or HML_BRIDGE_PASSWORD")
    bridge = Bridge(
        name=args.name, address=args.to, username=args.user, password=password, ca_file=args.ca, tls=not args.no_tls
    )
    registry = broker.load()
    conf = Path(args.out or broker.folder / f"bridge-{args.name}.conf")
    acl = Path(args.acl_out or broker.folder / f"bridge-{args.name}.fleet-acl")
    conf.write_text(bridge_conf(registry, bridge))
    conf.chmod(0o600)
    acl.write_text(fleet_acl(registry, bridge))
    print(f"{conf}: append it to this broker's mosquitto.conf (or include_dir) and restart mosquitto")
    print(f"{acl}: add it to the fleet broker's ACL file, and the account {args.user} to its passwords")
    return 0


def _connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", default=os.environ.get("HML_BROKER", "localhost"), help="broker host")
    parser.add_argument("--port", type=int, default=int(os.environ.get("HML_PORT", "8883")))
    parser.add_argument("--user", default=os.environ.get("HML_USER"), help="your parent account")
    parser.add_argument("--password", help="your password (or set HML_PASSWORD)")
    parser.add_argument("--ca", default=os.environ.get("HML_CA"), help="the broker's CA certificate")
    parser.add_argument("--no-tls", action="store_true", help="plain MQTT (a broker on this machine only)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for an answer")
    parser.add_argument("--json", action="store_true", help="print replies as JSON")


def build_parser() -> argparse.ArgumentParser:
    """The command line: a parent's commands to a speaker, voices, watch, and the installer's broker."""
    parser = argparse.ArgumentParser(prog="hearmylove-remote", description="Talk to a Hear My Love speaker.")
    sub = parser.add_subparsers(dest="command", required=True)
    _speaker_commands(sub)
    voices.add_parser(sub, _connection_options, lambda args: voices.run(args, _connect))
    watch = sub.add_parser("watch", help="print what your speakers say")
    _connection_options(watch)
    watch.add_argument("--until", help="stop after this event, e.g. story.finished")
    watch.set_defaults(func=cmd_watch)
    _broker_commands(sub.add_parser("broker", help="installer: set up the family broker and its accounts"))
    return parser


def _speaker_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """One subcommand per protocol command a parent sends to a speaker."""
    for action, text in [
        ("put", "send a story"),
        ("tell", "tell a story now or at a time"),
        ("delete", "delete a story"),
        ("list", "list the stories on the speaker"),
        ("pause", "pause"),
        ("resume", "resume"),
        ("stop", "stop"),
        ("next", "next story"),
        ("volume", "set the volume"),
        ("settings", "max volume, quiet hours, sleep timer, light"),
        ("ping", "is the speaker there?"),
    ]:
        p = sub.add_parser(action, help=text)
        p.add_argument("device", help="the speaker's device id")
        _connection_options(p)
        p.set_defaults(func=cmd_remote, action=action)
        if action in ("put", "tell"):
            p.add_argument("--title", default="A story")
            p.add_argument("--text")
            p.add_argument("--file", help="the story from a UTF-8 file")
            p.add_argument("--lang", default="auto", choices=("en", "zh", "auto"))
            p.add_argument("--story-id")
            p.add_argument("--voice", help="tell it in this voice (see: voice list); default: the active voice")
        if action == "tell":
            p.add_argument("--at", help="ISO 8601 time with zone, e.g. 2026-11-21T19:30:00+08:00")
            p.add_argument("--from-start", action="store_true")
            p.add_argument("--wait", action="store_true", help="wait until the child heard it to the end")
        if action == "delete":
            p.add_argument("story_id")
        if action == "volume":
            p.add_argument("volume", type=float)
        if action == "settings":
            p.add_argument("--max-volume", type=float)
            p.add_argument("--quiet", help="quiet hours, e.g. 20:30-07:00")
            p.add_argument("--no-quiet", action="store_true", help="no quiet hours")
            p.add_argument("--sleep-timer", type=int, help="minutes (0: off)")
            p.add_argument("--led", type=float, help="light brightness 0..1")


def _broker_commands(broker: argparse.ArgumentParser) -> None:
    """`broker ...`: the installer sets up the family broker, its accounts and its fleet bridge."""
    bsub = broker.add_subparsers(dest="broker_action", required=True)
    init = bsub.add_parser("init", help="TLS certificates and config for a new broker")
    init.add_argument("--host", required=True, help="the broker's public name or IP")
    init.add_argument("--mqtt-port", type=int, default=8883)
    init.add_argument("--wss-port", type=int, default=8884)
    init.add_argument("--bind", default="", help="listen address (default: all)")
    init.add_argument("--app-url", help="where parents open the web app (default: https://HOST/)")
    family = bsub.add_parser("add-family", help="a family with its parents and speakers")
    family.add_argument("family")
    family.add_argument("--parent", action="append", default=[], required=True)
    family.add_argument("--device", action="append", default=[], required=True)
    for kind in ("add-parent", "add-device"):
        member = bsub.add_parser(kind, help=f"add a {kind[4:]} to a family")
        member.add_argument("family")
        member.add_argument("name")
    studio = bsub.add_parser("add-studio", help="an account for the studio service: voice packs to any speaker here")
    studio.add_argument("name")
    renew = bsub.add_parser("new-password", help="a new password (revokes the old one and its pairing link)")
    renew.add_argument("name", help="the parent's or speaker's account")
    bsub.add_parser("show", help="the families")
    bridge = bsub.add_parser("bridge", help="join a fleet: the Mosquitto bridge to a fleet broker (docs/fleet.md)")
    bridge.add_argument("name", help="the connection's name, e.g. the region: eu-1")
    bridge.add_argument("--to", required=True, help="the fleet broker, host:port")
    bridge.add_argument("--user", required=True, help="the bridge's account on the fleet broker")
    bridge.add_argument("--password", help="its password (or set HML_BRIDGE_PASSWORD)")
    bridge.add_argument("--ca", help="the fleet broker's CA certificate")
    bridge.add_argument("--no-tls", action="store_true", help="plain MQTT to the fleet broker (loopback tests only)")
    bridge.add_argument("--out", help="where the bridge section goes (default: DIR/bridge-NAME.conf)")
    bridge.add_argument("--acl-out", help="the fleet broker's ACL block (default: DIR/bridge-NAME.fleet-acl)")
    for p in bsub.choices.values():
        p.add_argument("--dir", default="/etc/mosquitto/hearmylove", help="the broker's folder")
        if p.prog.split()[-1] in ("add-family", "add-parent", "new-password"):
            p.add_argument("--no-qr", action="store_true", help="no QR code in the terminal (the PNG is written)")
    broker.set_defaults(func=cmd_broker)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (HearMyLoveError, OSError, TimeoutError) as exc:
        print(f"hearmylove-remote: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
