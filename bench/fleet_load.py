"""The family broker at fleet load: N simulated speakers and their parents on one Mosquitto.

The broker is the project's own (`hearmylove-remote broker` tooling: registry, one account
per speaker and per parent, ACLs, TLS, persistence, the shipped mosquitto.conf), on
loopback. Speakers are the daemon's own MQTT link (`MqttLink`: persistent session, QoS 1,
manual acks, last will, TLS) answering every command as the daemon would; parents are the
project's `Remote`, each sending its speakers a story (story.put) and "tell it now"
(story.tell) all at once. Printed: connection time, command round trip (median, p99),
broker memory and CPU, and lost commands (sent but never answered, or never received;
must be 0). Bounded: --speakers, --timeout; loopback only. docs/fleet.md has a run.

    .venv/bin/python bench/fleet_load.py [--speakers 3000] [--parents 300] [--procs 4] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import logging
import multiprocessing as mp
import os
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from hearmylove.broker import free_port
from hearmylove.errors import BrokerError
from hearmylove_remote.families import Broker

STORY = (
    "Once upon a time, a little fox found a shiny red apple under the old tree. "
    "She carried it home to share it with her brother, and they ate it by the fire."
)
COMMANDS: list[tuple[str, dict[str, Any]]] = [
    ("story.put", {"story_id": "fox", "title": "The fox", "text": STORY, "lang": "en"}),
    ("story.tell", {"story_id": "fox"}),
]
"""What each parent sends each of its speakers: a story, then "tell it now"."""
TICK = os.sysconf("SC_CLK_TCK")
CONNECTS_PER_TURN = 4


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


# -- the broker -------------------------------------------------------------------------


def make_broker(folder: Path, speakers: int, parents: int) -> tuple[Broker, dict[str, str], dict[str, list[str]]]:
    """Families of one parent and speakers/parents speakers each, made with the admin tooling."""
    broker = Broker(folder)
    broker.init("127.0.0.1", free_port(), free_port(), bind="127.0.0.1")
    passwords: dict[str, str] = {}
    families: dict[str, list[str]] = {}
    for p in range(parents):
        devices = [f"kid-{d:05d}" for d in range(p, speakers, parents)]
        parent = f"parent-{p:05d}"
        passwords |= broker.add_family(f"family-{p:05d}", [parent], devices)
        families[parent] = devices
    return broker, passwords, families


class Mosquitto:
    """The family broker's own mosquitto.conf, run as this user; CPU and memory sampled from /proc."""

    def __init__(self, broker: Broker, extra: str = "") -> None:
        conf = broker.folder / "run.conf"
        conf.write_text(f"user {getpass.getuser()}\n" + (broker.folder / "mosquitto.conf").read_text() + extra)
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        log = open(broker.folder / "mosquitto.log", "wb")  # noqa: SIM115 - as long as the broker
        self.process = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        self.peak_rss = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def rss(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def _sample(self) -> None:
        while not self._stop.wait(0.2) and self.process.poll() is None:
            self.peak_rss = max(self.peak_rss, self.rss())

    def stop(self) -> None:
        self._stop.set()
        self.process.terminate()
        self.process.wait(timeout=30)


# -- speakers: the daemon's MQTT link, answering like the daemon ---------------------------


class SpeakerLoop:
    """Many `MqttLink`s in one process, driven by one selector loop instead of a thread each.

    Everything on the wire is the link's own: the CONNECT `MqttLink.start` prepares
    (persistent session, session expiry, maximum packet size, last will, TLS), the
    subscription and availability it sends on CONNACK, reply routing and manual acks.
    Only paho's network thread is replaced: 3,000 of them starve two cores of the GIL and
    miss their keepalives, which measures the harness, not the broker.
    """

    def __init__(self, devices: list[tuple[str, str]], port: int, ca: str, rate: float, nodelay: bool) -> None:
        self.devices, self.port, self.ca, self.rate, self.nodelay = devices, port, ca, rate, nodelay
        self.lock = threading.Lock()
        self.received: set[str] = set()
        self.links: list[Any] = []
        self.started: dict[int, float] = {}
        self.connected_at: dict[int, float] = {}
        self.drops = 0
        self.stop = threading.Event()
        self.selector = selectors.DefaultSelector()
        self.sockets: dict[int, Any] = {}

    def _answer(self, index: int) -> Any:
        from hearmylove.protocol import Reply

        def on_command(incoming: Any) -> None:
            link = self.links[index]
            command_id = json.loads(incoming.payload).get("id")
            link.reply(Reply(id=command_id, ok=True, result={"command": incoming.name}), incoming)
            link.ack(incoming)
            with self.lock:
                self.received.add(f"{link.device_id}/{command_id}")

        return on_command

    def _connect(self, index: int) -> None:
        import paho.mqtt.client as mqtt

        from hearmylove.config import MqttConfig
        from hearmylove.mqtt import MqttLink

        device, password = self.devices[index]
        config = MqttConfig(host="127.0.0.1", port=self.port, ca_file=Path(self.ca), username=device, password=password)
        link = MqttLink(config, device, self._answer(index))
        setattr(link._client, "loop_start", lambda: mqtt.MQTT_ERR_SUCCESS)  # this loop drives it  # noqa: B010
        self.links.append(link)
        self.started[index] = time.monotonic()
        link.start()  # stores the daemon's CONNECT (connect_async)
        self._reconnect(index)

    def _reconnect(self, index: int) -> None:
        client = self.links[index]._client
        old = self.sockets.pop(index, None)
        if old is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(old)
        try:
            client.reconnect()
        except OSError:
            return  # tried again on the next tick
        self.sockets[index] = client.socket()
        if self.nodelay:
            self.sockets[index].setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.selector.register(self.sockets[index], selectors.EVENT_READ, index)

    def run(self) -> None:
        began, last = time.monotonic(), 0.0
        while not self.stop.is_set():
            due = min(len(self.devices), int((time.monotonic() - began) * self.rate) + 1)
            for _ in range(min(CONNECTS_PER_TURN, due - len(self.links))):  # CONNACKs are read in between
                self._connect(len(self.links))
            for key, _ in self.selector.select(timeout=0.02):
                self._read(key.data)
            for link in self.links:
                if link._client.want_write():
                    link._client.loop_write()
            now = time.monotonic()
            for index in [i for i in self.started if i not in self.connected_at]:
                if self.links[index].connected.is_set():
                    self.connected_at[index] = now
            if now - last >= 1.0:
                last = now
                self._tick()

    def _read(self, index: int) -> None:
        client = self.links[index]._client
        client.loop_read(max_packets=10)
        sock = client.socket()
        while sock is not None and hasattr(sock, "pending") and sock.pending():
            client.loop_read(max_packets=10)  # TLS may hold decrypted bytes select cannot see
            sock = client.socket()

    def _tick(self) -> None:
        """Keepalives, and a new connection for a link the broker dropped (counted)."""
        for index, link in enumerate(self.links):
            client = link._client
            client.loop_misc()
            if client.socket() is None:
                self.drops += 1
                self._reconnect(index)


def run_speakers(
    devices: list[tuple[str, str]], port: int, ca: str, rate: float, nodelay: bool, timeout: float, conn: Connection
) -> None:
    logging.basicConfig(level=logging.ERROR)
    loop = SpeakerLoop(devices, port, ca, rate, nodelay)
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while len(loop.connected_at) < len(devices) and time.monotonic() < deadline:
        time.sleep(0.05)
    each = [loop.connected_at[i] - loop.started[i] for i in list(loop.connected_at)]
    last = max(loop.connected_at.values(), default=0.0)
    first = min(loop.started.values(), default=0.0)
    conn.send({"connected": len(loop.connected_at), "all_seconds": last - first, "each": each})
    conn.recv()  # "report": the parents are done
    with loop.lock:
        conn.send({"received": sorted(loop.received), "drops": loop.drops})
    conn.recv()  # "stop"
    loop.stop.set()
    thread.join(timeout=10)


# -- parents: the project's Remote --------------------------------------------------------


def run_parents(
    families: list[tuple[str, str, list[str]]], port: int, ca: str, reply_timeout: float, conn: Connection
) -> None:
    from hearmylove.remote import Remote

    remotes = []
    for parent, password, _ in families:
        remotes.append(Remote("127.0.0.1", port, parent, password, tls=True, ca_file=ca, client_id=parent).connect(60))
    conn.send("connected")
    conn.recv()  # "go": every parent sends at once
    rtts: list[float] = []
    sent: list[str] = []
    lost: list[str] = []
    lock = threading.Lock()

    def parent_sends(remote: Remote, devices: list[str]) -> None:
        for device in devices:
            for name, fields in COMMANDS:
                command_id = os.urandom(6).hex()
                began = time.monotonic()
                with lock:
                    sent.append(f"{device}/{command_id}")
                try:
                    reply = remote.send(device, name, timeout=reply_timeout, id=command_id, **fields)
                except BrokerError:
                    with lock:
                        lost.append(f"{device}/{command_id}")
                    continue
                with lock:
                    if reply.ok:
                        rtts.append(time.monotonic() - began)
                    else:
                        lost.append(f"{device}/{command_id}")

    threads = [threading.Thread(target=parent_sends, args=(r, f[2])) for r, f in zip(remotes, families, strict=True)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    conn.send({"rtts": rtts, "sent": sent, "lost": lost, "seconds": time.monotonic() - began})
    for remote in remotes:
        remote.close()


def probe(
    families: dict[str, list[str]], passwords: dict[str, str], port: int, ca: str, count: int, timeout: float
) -> dict[str, Any]:
    """One parent's commands, one at a time, while the whole fleet is connected and quiet."""
    from hearmylove.remote import Remote

    parent, devices = next(iter(families.items()))
    rtts = []
    with Remote("127.0.0.1", port, parent, passwords[parent], tls=True, ca_file=ca, client_id=parent) as remote:
        for i in range(count):
            began = time.monotonic()
            if remote.send(devices[i % len(devices)], "ping", timeout=timeout).ok:
                rtts.append(time.monotonic() - began)
    return {
        "probe_commands": count,
        "probe_answered": len(rtts),
        "probe_median_ms": round(1000 * statistics.median(rtts), 1) if rtts else None,
        "probe_p99_ms": round(1000 * _percentile(rtts, 0.99), 1),
    }


# -- the run ------------------------------------------------------------------------------


def _split(items: list[Any], parts: int) -> list[list[Any]]:
    return [items[i::parts] for i in range(parts) if items[i::parts]]


class Children:
    """The harness's worker processes, each with a pipe to it; all ended on the way out."""

    def __init__(self) -> None:
        self.ctx = mp.get_context("spawn")
        self.processes: list[Any] = []

    def start(self, target: Any, *args: Any) -> Connection:
        ours, theirs = self.ctx.Pipe()
        process = self.ctx.Process(target=target, args=(*args, theirs), daemon=True)
        process.start()
        self.processes.append(process)
        return ours

    def end(self) -> None:
        for process in self.processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()


def connect_speakers(
    args: argparse.Namespace, children: Children, devices: list[tuple[str, str]], port: int, ca: str, broker: Mosquitto
) -> tuple[list[Connection], dict[str, Any]]:
    cpu, began = broker.cpu_seconds(), time.monotonic()
    pipes = [
        children.start(run_speakers, part, port, ca, args.rate / args.procs, args.tcp_nodelay, args.timeout)
        for part in _split(devices, args.procs)
    ]
    connects = [pipe.recv() for pipe in pipes if pipe.poll(args.timeout + 60)]
    wall = time.monotonic() - began
    each = [s for c in connects for s in c["each"]]
    connected = sum(c["connected"] for c in connects)
    print(f"fleet: {connected}/{args.speakers} speakers connected in {wall:.1f} s", file=sys.stderr)
    return pipes, {
        "connected": connected,
        "connect_all_seconds": round(wall, 1),
        "connect_median_ms": round(1000 * statistics.median(each), 1) if each else None,
        "connect_p99_ms": round(1000 * _percentile(each, 0.99), 1),
        "broker_cpu_connect_s": round(broker.cpu_seconds() - cpu, 1),
        "broker_rss_connected_mib": round(broker.rss() / 2**20, 1),
    }


def command_burst(
    args: argparse.Namespace,
    children: Children,
    parents: list[tuple[str, str, list[str]]],
    speaker_pipes: list[Connection],
    port: int,
    ca: str,
    broker: Mosquitto,
) -> dict[str, Any]:
    """Every parent sends at once; then the speakers say what they received."""
    pipes = [children.start(run_parents, part, port, ca, args.reply_timeout) for part in _split(parents, args.procs)]
    for pipe in pipes:
        if not pipe.poll(args.timeout) or pipe.recv() != "connected":
            raise SystemExit("fleet: the parents did not all connect in time")
    cpu, began = broker.cpu_seconds(), time.monotonic()
    for pipe in pipes:
        pipe.send("go")
    sends = [pipe.recv() for pipe in pipes if pipe.poll(args.timeout)]
    wall, cpu = time.monotonic() - began, broker.cpu_seconds() - cpu
    for pipe in speaker_pipes:
        pipe.send("report")
    reports = [pipe.recv() for pipe in speaker_pipes if pipe.poll(60)]
    received = {r for report in reports for r in report["received"]}
    sent = [s for part in sends for s in part["sent"]]
    rtts = [r for part in sends for r in part["rtts"]]
    unanswered = {s for part in sends for s in part["lost"]}
    never_received = {s for s in sent if s not in received}
    return {
        "commands": len(sent),
        "commands_per_second": round(len(sent) / wall, 1),
        "rtt_median_ms": round(1000 * statistics.median(rtts), 1) if rtts else None,
        "rtt_p99_ms": round(1000 * _percentile(rtts, 0.99), 1),
        "broker_cpu_commands_s": round(cpu, 1),
        "broker_cpu_commands_percent": round(100 * cpu / wall, 1),
        "broker_rss_peak_mib": round(broker.peak_rss / 2**20, 1),
        "burst_lost": len(unanswered | never_received),
        "unanswered": len(unanswered),
        "never_received": len(never_received),
        "speaker_drops": sum(report["drops"] for report in reports),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * (args.speakers + args.parents) + 256
    if hard < need:
        raise SystemExit(f"open files limit {hard} is below the {need} this run needs: raise it (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))  # the broker inherits it
    folder = Path(args.dir or tempfile.mkdtemp(prefix="fleet-"))
    setup = time.monotonic()
    broker, passwords, families = make_broker(folder, args.speakers, args.parents)
    port, ca = broker.load().mqtt_port, str(folder / "tls" / "ca.crt")
    accounts = args.speakers + args.parents
    print(f"fleet: {accounts} accounts made in {time.monotonic() - setup:.0f} s", file=sys.stderr)
    extra = "set_tcp_nodelay true\n" if args.tcp_nodelay else ""
    if args.save_every:  # instead of after every change (docs/security.md): what durability costs at load
        extra += f"autosave_on_changes false\nautosave_interval {args.save_every}\n"
    mosquitto = Mosquitto(broker, extra)
    time.sleep(0.5)
    children = Children()
    result: dict[str, Any] = {"speakers": args.speakers, "parents": args.parents}
    try:
        devices = [(d, passwords[d]) for ds in families.values() for d in ds]
        speaker_pipes, connecting = connect_speakers(args, children, devices, port, ca, mosquitto)
        result |= connecting
        result |= probe(families, passwords, port, ca, args.probe, args.reply_timeout)
        parents = [(p, passwords[p], ds) for p, ds in families.items()]
        result |= command_burst(args, children, parents, speaker_pipes, port, ca, mosquitto)
        missing = args.speakers - result["connected"] + args.probe - result["probe_answered"]
        result["lost"] = result["burst_lost"] + missing
        for pipe in speaker_pipes:
            pipe.send("stop")
    finally:
        children.end()
        mosquitto.stop()
        if not args.dir:
            shutil.rmtree(folder, ignore_errors=True)
    return result


TABLE = [
    ("speakers connected (TLS, persistent session)", lambda r: f"{r['connected']} / {r['speakers']}"),
    ("time until all were connected", lambda r: f"{r['connect_all_seconds']} s"),
    ("one connection, median / p99", lambda r: f"{r['connect_median_ms']} / {r['connect_p99_ms']} ms"),
    ("broker memory with all connected (RSS)", lambda r: f"{r['broker_rss_connected_mib']} MiB"),
    ("broker CPU to accept them all", lambda r: f"{r['broker_cpu_connect_s']} s"),
    (
        "one parent's round trip, fleet quiet, median / p99",
        lambda r: f"{r['probe_median_ms']} / {r['probe_p99_ms']} ms ({r['probe_commands']} pings)",
    ),
    ("commands sent by parents, all at once", lambda r: f"{r['commands']} ({r['parents']} parents)"),
    ("commands answered per second", lambda r: f"{r['commands_per_second']}"),
    ("their round trip, median / p99", lambda r: f"{r['rtt_median_ms']} / {r['rtt_p99_ms']} ms"),
    (
        "broker CPU while commanding",
        lambda r: f"{r['broker_cpu_commands_s']} s ({r['broker_cpu_commands_percent']}% of one core)",
    ),
    ("broker memory, peak (RSS)", lambda r: f"{r['broker_rss_peak_mib']} MiB"),
    ("speaker connections the broker dropped", lambda r: f"{r['speaker_drops']}"),
    ("lost commands", lambda r: f"{r['lost']}"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speakers", type=int, default=3000)
    parser.add_argument("--parents", type=int, default=300, help="one family each; speakers are shared out evenly")
    parser.add_argument("--procs", type=int, default=4, help="processes for the speakers (and as many for parents)")
    parser.add_argument("--rate", type=float, default=500.0, help="new speaker connections per second")
    parser.add_argument("--timeout", type=float, default=300.0, help="bound on each phase, seconds")
    parser.add_argument("--reply-timeout", type=float, default=60.0, help="a command unanswered this long is lost")
    parser.add_argument("--probe", type=int, default=100, help="pings one parent sends while the fleet is quiet")
    parser.add_argument("--save-every", type=int, help="save the broker's database every N s (not what ships)")
    parser.add_argument("--tcp-nodelay", action="store_true", help="broker and speakers: TCP_NODELAY (not what ships)")
    parser.add_argument("--dir", help="keep the broker's folder here (default: a temporary one, removed)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if not 1 <= args.parents <= args.speakers <= 20000:
        parser.error("need 1 <= --parents <= --speakers <= 20000")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the broker and workers are stopped on the way out
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        print("| figure | value |\n|---|---|")
        for name, value in TABLE:
            print(f"| {name} | {value(result)} |")
    return 0 if result["lost"] == 0 and result["connected"] == args.speakers else 1


if __name__ == "__main__":
    sys.exit(main())
