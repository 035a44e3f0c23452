"""A parent's side of the protocol: send a command, wait for its reply, watch events.

Used by `hearmylove demo` and the tests; the parent's CLI and web app speak the same
topics and payloads (protocol.py).
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import paho.mqtt.client as mqtt

from .errors import BrokerError
from .protocol import TOPIC_ROOT, Reply

SESSION_TAKEN_OVER = 0x8E


@dataclass(frozen=True)
class Progress:
    """Where a command is: being sent to the broker, or sent and waiting for the speaker's answer."""

    stage: Literal["sending", "waiting"]
    size: int
    """The command's bytes."""
    elapsed: float
    """Seconds since sending began."""


@dataclass(frozen=True)
class Message:
    """One message from a speaker, as the remote received it (JSON payloads decoded)."""

    device_id: str
    kind: str  # "event", "state", "availability", "reply"
    name: str  # event name, reply id, or ""
    payload: Any


class Remote:
    """A parent's MQTT client: send commands to speakers and wait for replies and events.

    Everything the parent's account may read arrives in `messages`, in order; `wait_for`
    takes from it. Use it as a context manager, or call `connect` and `close`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        tls: bool = False,
        ca_file: str | None = None,
        client_id: str | None = None,
    ) -> None:
        self.messages: queue.Queue[Message] = queue.Queue()
        self._replies: dict[str, queue.Queue[Reply]] = {}
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._refused: str | None = None
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"hml-parent-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        client.username_pw_set(username, password)
        if tls:
            client.tls_set(ca_certs=ca_file)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client
        self._host, self._port = host, port

    def connect(self, timeout: float = 10.0) -> Remote:
        """Log in and subscribe to the account's speakers; returns self.

        Raises BrokerError when the broker cannot be reached, refuses the login, or does
        not answer within `timeout` seconds.
        """
        try:
            self._client.connect(self._host, self._port, keepalive=30)
        except OSError as exc:
            raise BrokerError(f"cannot reach the broker at {self._host}:{self._port}: {exc}") from exc
        self._client.loop_start()
        if not self._connected.wait(timeout):
            self.close()
            raise BrokerError(self._refused or f"no answer from the broker at {self._host}:{self._port}")
        return self

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> Remote:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: Any, props: object) -> None:
        if reason.is_failure:
            self._refused = f"the broker refused the login: {reason}"
            return
        client.subscribe(f"{TOPIC_ROOT}/+/#", qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int, reasons: Any, props: object) -> None:
        """Connected once the broker has the subscription: a reply faster than the SUBACK would
        otherwise be lost (a quick command sent right after logging in timed out). Whatever the
        SUBACK says, the broker's ACL decides what is delivered."""
        self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object, reason: Any, props: object) -> None:
        """The broker binds client ids to accounts: a second login with this account took
        the session over. Reconnecting would only take it back, for ever; stop instead."""
        if getattr(reason, "value", None) == SESSION_TAKEN_OVER:
            self._refused = "this account logged in elsewhere (one connection per account)"
            client.disconnect()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        parts = message.topic.split("/")
        if len(parts) < 4:
            return
        device_id, kind, name = parts[2], parts[3], "/".join(parts[4:])
        raw = bytes(message.payload)
        if kind == "cmd":
            return
        if kind == "availability":
            self.messages.put(Message(device_id, kind, "", raw.decode()))
            return
        try:
            payload = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            payload = raw.decode("utf-8", "replace")
        if kind == "reply":
            reply = Reply.model_validate(payload)
            with self._lock:
                waiting = self._replies.get(name)
            if waiting is not None:
                waiting.put(reply)
        self.messages.put(Message(device_id, kind, name, payload))

    def publish(self, device_id: str, name: str, payload: bytes | str, qos: int = 1) -> None:
        """Publish a raw payload as command `name` to a speaker (no id added, no reply awaited);
        returns once the broker has it, or after 10 s."""
        self._client.publish(f"{TOPIC_ROOT}/{device_id}/cmd/{name}", payload, qos=qos).wait_for_publish(10)

    def send(
        self,
        device_id: str,
        name: str,
        timeout: float = 30.0,
        progress: Callable[[Progress], None] | None = None,
        **fields: Any,
    ) -> Reply:
        """Send a command and wait for the device's reply. `progress` hears how it goes (a voice
        pack is megabytes and takes the speaker a while to check), at least every second."""
        command_id = fields.pop("id", None) or uuid.uuid4().hex[:12]
        waiting: queue.Queue[Reply] = queue.Queue()
        with self._lock:
            self._replies[command_id] = waiting
        tell = progress or (lambda _: None)
        try:
            stamped = json.dumps({"id": command_id, "sent_at": datetime.now(UTC).isoformat(), **fields}, default=str)
            started = time.monotonic()
            tell(Progress("sending", len(stamped), 0.0))
            self.publish(device_id, name, stamped)
            deadline = started + timeout
            while (left := deadline - time.monotonic()) > 0:
                tell(Progress("waiting", len(stamped), time.monotonic() - started))
                try:
                    return waiting.get(timeout=min(left, 1.0))
                except queue.Empty:
                    continue
            raise BrokerError(f"no reply from {device_id} to {name} within {timeout:.0f} s")
        finally:
            with self._lock:
                self._replies.pop(command_id, None)

    def wait_for(self, kind: str, name: str = "", timeout: float = 60.0, device_id: str | None = None) -> Message:
        """The next message of this kind (and name); others are passed over."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {kind} {name} within {timeout:.0f} s")
            try:
                message = self.messages.get(timeout=left)
            except queue.Empty:
                continue
            if message.kind == kind and (not name or message.name == name):
                if device_id is None or message.device_id == device_id:
                    return message
