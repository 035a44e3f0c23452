"""The speaker's MQTT link (paho-mqtt 2, MQTT 5).

A persistent session (`clean_start=False`, long expiry) so commands sent while the
speaker was off are delivered when it returns. Commands are acknowledged only after
they were executed and recorded: if the power goes in between, the broker sends the
command again and the recorded id keeps it from running twice. Retained `state` and
a last-will `availability` tell the parent's app what it needs on opening.

Hostile input stops here or gets a bounded path on: the client id is the account name
(the broker binds the two), the broker is asked never to send a packet bigger than the
largest legitimate command, retained commands are never delivered at subscribe time and
arrive flagged otherwise, and a reply that cannot go where the sender asked goes to
reply/<id> or `event/error` instead, so every command ends in one outcome and an ack.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from .config import MqttConfig
from .protocol import MAX_MESSAGE_BYTES, DeviceState, ErrorEvent, Event, Reply, device_topic, valid_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Incoming:
    """A command as it came off the wire, before it is parsed."""

    name: str
    payload: bytes
    mid: int
    qos: int
    response_topic: str | None
    correlation_data: bytes | None
    retain: bool = False
    """Published retained: a command must not live on the broker and run again later."""


MAX_PACKET_BYTES = MAX_MESSAGE_BYTES + 64 * 1024
"""The largest packet the speaker accepts: the biggest payload plus topic and properties."""


class MqttLink:
    """The speaker's one connection to the broker, as `device_id` under `hml/v1/<device_id>/`.

    `on_command(Incoming)` is called on paho's network thread for every command; it should
    only queue it (the daemon executes, replies, then calls `ack`). Nothing connects until
    `start`. Certificate files named in `config` must exist (the config checks them).
    """

    def __init__(self, config: MqttConfig, device_id: str, on_command: Callable[[Incoming], None]) -> None:
        self.config = config
        self.device_id = device_id
        self._on_command = on_command
        self.connected = threading.Event()
        self._last_state: DeviceState | None = None
        self._lock = threading.Lock()
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            # The broker replaces it with the account name anyway (use_username_as_clientid).
            client_id=config.username or device_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if config.username:
            client.username_pw_set(config.username, config.password)
        if config.tls:
            client.tls_set(
                ca_certs=str(config.ca_file) if config.ca_file else None,
                certfile=str(config.cert_file) if config.cert_file else None,
                keyfile=str(config.key_file) if config.key_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.will_set(self.topic("availability"), "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=config.reconnect_max_seconds)
        client.on_connect = self._connected
        client.on_disconnect = self._disconnected
        client.on_message = self._message
        client.suppress_exceptions = True  # a callback's bug must not stop the network loop
        self._client = client

    def topic(self, *parts: str) -> str:
        """This speaker's topic for `parts`, e.g. topic("event", "error")."""
        return device_topic(self.device_id, *parts)

    def start(self) -> None:
        """Connect in the background; paho reconnects with backoff whenever the link drops."""
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.config.session_expiry
        properties.MaximumPacketSize = MAX_PACKET_BYTES
        self._client.connect_async(
            self.config.host, self.config.port, self.config.keepalive, clean_start=False, properties=properties
        )
        self._client.loop_start()

    def stop(self) -> None:
        """Say goodbye (retained offline) and disconnect; the session stays on the broker."""
        if self.connected.is_set():
            self._client.publish(self.topic("availability"), "offline", qos=1, retain=True).wait_for_publish(2)
        self._client.disconnect()
        self._client.loop_stop()

    def _connected(self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object) -> None:
        if getattr(reason, "is_failure", False):
            log.error("broker refused the connection: %s", reason)
            return
        log.info(
            "connected to %s:%d (session present: %s)",
            self.config.host,
            self.config.port,
            getattr(flags, "session_present", "?"),
        )
        # Retained commands: none replayed at subscribe (2), live ones keep their flag.
        options = SubscribeOptions(qos=1, retainAsPublished=True, retainHandling=2)
        client.subscribe(self.topic("cmd", "#"), options=options)
        client.publish(self.topic("availability"), "online", qos=1, retain=True)
        with self._lock:
            state = self._last_state
        if state is not None:
            self._publish_state(state)
        self.connected.set()

    def _disconnected(
        self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        self.connected.clear()
        if getattr(reason, "is_failure", True) or getattr(reason, "value", 0) != 0:
            log.warning("disconnected from the broker (%s); reconnecting", reason)
        else:
            log.info("disconnected from the broker")

    def _message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            incoming = self._incoming(message)
        except Exception:  # noqa: BLE001 - a message paho could not hand over whole
            log.exception("unreadable message %d dropped", message.mid)
            incoming = None
        if incoming is None:
            client.ack(message.mid, message.qos)
        else:
            self._on_command(incoming)

    def _incoming(self, message: mqtt.MQTTMessage) -> Incoming | None:
        """A command to execute, or None for what only needs an ack (an empty retained clear)."""
        prefix = self.topic("cmd") + "/"
        if not (message.topic + "/").startswith(prefix) or (message.retain and not message.payload):
            return None  # `cmd` itself is a command with no name: it gets its error reply
        props = getattr(message, "properties", None)
        return Incoming(
            name=message.topic[len(prefix) :],
            payload=bytes(message.payload),
            mid=message.mid,
            qos=message.qos,
            response_topic=getattr(props, "ResponseTopic", None),
            correlation_data=getattr(props, "CorrelationData", None),
            retain=bool(message.retain),
        )

    def ack(self, incoming: Incoming) -> None:
        """Acknowledge a command once it was executed and recorded (before that, a reconnect
        makes the broker deliver it again)."""
        if incoming.qos > 0:
            self._client.ack(incoming.mid, incoming.qos)

    # -- Publisher port ------------------------------------------------------------

    def event(self, event: Event) -> None:
        """Publish an event on `event/<name>` (QoS 1)."""
        self._client.publish(self.topic("event", event.NAME), event.model_dump_json(), qos=1)

    def state(self, state: DeviceState) -> None:
        """Publish the state, retained; it is published again after every reconnect."""
        with self._lock:
            self._last_state = state
        self._publish_state(state)

    def _publish_state(self, state: DeviceState) -> None:
        self._client.publish(self.topic("state"), state.model_dump_json(), qos=1, retain=True)

    def reply(self, reply: Reply, incoming: Incoming | None = None) -> None:
        """To the MQTT 5 response topic if the sender gave a usable one under this device's
        reply/ subtree (the ACLs allow no other), else reply/<id>; where neither can be
        sent, an `error` event. Never raises: the caller acks whatever happens here."""
        for topic, properties in self._reply_routes(reply, incoming):
            try:
                self._client.publish(topic, reply.model_dump_json(), qos=1, properties=properties)
                return
            except Exception as exc:  # noqa: BLE001 - try the next route
                log.warning("reply %s to %r not sent: %s", reply.id, topic, exc)
        name = incoming.name if incoming is not None else None
        error = reply.error
        code, message = (error.code, error.message) if error else ("internal", "the reply could not be sent")
        event = ErrorEvent(code=code, message=message, command=name, id=reply.id)
        try:
            self.event(event)
        except Exception:  # noqa: BLE001 - nothing more can be said
            log.exception("error event for %s not sent", name)

    def _reply_routes(self, reply: Reply, incoming: Incoming | None) -> list[tuple[str, Properties | None]]:
        routes: list[tuple[str, Properties | None]] = []
        if incoming is not None and self._usable_response_topic(incoming.response_topic):
            properties = None
            if incoming.correlation_data is not None:
                properties = Properties(PacketTypes.PUBLISH)
                properties.CorrelationData = incoming.correlation_data
            routes.append((str(incoming.response_topic), properties))
        if valid_id(reply.id):
            routes.append((self.topic("reply", str(reply.id)), None))
        return routes

    def _usable_response_topic(self, topic: str | None) -> bool:
        """Under our reply/ subtree, no wildcards or NUL, not absurdly long."""
        own_replies = self.topic("reply") + "/"
        if not topic or not topic.startswith(own_replies) or len(topic) == len(own_replies):
            return False
        return len(topic) <= 1024 and not any(c in topic for c in "+#\0")
