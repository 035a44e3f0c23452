"""Figures for docs/security.md, from a real Mosquitto configured as shipped (LocalBroker):

- the cost of saving the database on every change (`autosave_on_changes`): commands queued
  for an offline speaker per second, and the broker's CPU time, against the old
  `autosave_interval 60`, with an empty and with a 4 MiB queue already held;
- how fast one client can guess passwords online (plain MQTT on loopback, no TLS: an upper bound).

    .venv/bin/python bench/broker_hostile.py [--messages 300] [--guesses 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil

from hearmylove.broker import Account, LocalBroker

DEVICE = "kid-bench"


def _client(port: int, user: str, password: str, client_id: str = "", clean: bool = True) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.username_pw_set(user, password)
    properties = None
    if not clean:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
    c.connect("127.0.0.1", port, clean_start=clean, properties=properties)
    c.loop_start()
    return c


def queue_rate(folder: Path, messages: int, on_changes: bool, backlog_bytes: int) -> tuple[float, float]:
    """Messages per second queued for an offline speaker, and broker CPU seconds per message."""
    accounts = [Account(DEVICE, "d"), Account("mum", "m", devices=(DEVICE,))]
    broker = LocalBroker(folder, accounts)
    if not on_changes:
        shipped = broker._write_config

        def every_minute() -> Path:
            conf = shipped()
            text = conf.read_text().replace("autosave_on_changes true", "autosave_on_changes false")
            conf.write_text(text.replace("autosave_interval 1", "autosave_interval 60"))
            return conf

        broker._write_config = every_minute  # type: ignore[method-assign]
    with broker:
        device = _client(broker.port, DEVICE, "d", DEVICE, clean=False)
        device.subscribe(f"hml/v1/{DEVICE}/cmd/#", qos=1)
        time.sleep(0.5)
        device.disconnect()
        device.loop_stop()
        mum = _client(broker.port, "mum", "m")
        if backlog_bytes:
            mum.publish(f"hml/v1/{DEVICE}/cmd/voice.install", b"x" * backlog_bytes, qos=1).wait_for_publish(30)
        process = psutil.Process(broker._process.pid)  # type: ignore[union-attr]
        cpu0, t0 = sum(process.cpu_times()[:2]), time.perf_counter()
        for n in range(messages):
            mum.publish(f"hml/v1/{DEVICE}/cmd/ping", f'{{"id": "q{n}"}}', qos=1).wait_for_publish(30)
        seconds, cpu = time.perf_counter() - t0, sum(process.cpu_times()[:2]) - cpu0
        mum.disconnect()
        mum.loop_stop()
    return messages / seconds, cpu / messages


def guess_rate(folder: Path, guesses: int) -> float:
    with LocalBroker(folder, [Account("mum", "right")]) as broker:
        t0 = time.perf_counter()
        for n in range(guesses):
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            c.username_pw_set("mum", f"guess-{n}")
            c.connect("127.0.0.1", broker.port)
            while c.loop(0.05) == mqtt.MQTT_ERR_SUCCESS and not c.is_connected():
                pass
            c.disconnect()
        return guesses / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--guesses", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print("persistence | backlog | commands queued/s | broker CPU ms per command")
        for backlog in (0, 4 << 20):
            for on_changes in (False, True):
                rate, cpu = queue_rate(root / f"q-{backlog}-{on_changes}", args.messages, on_changes, backlog)
                name = "every change" if on_changes else "every 60 s"
                print(f"{name:12} | {backlog >> 20} MiB | {rate:8.0f} | {cpu * 1000:6.2f}")
        rate = guess_rate(root / "g", args.guesses)
        print(f"online password guesses per second, one client, loopback, no TLS: {rate:.0f}")


if __name__ == "__main__":
    main()
