"""The speaker's MQTT link (paho-mqtt 2, MQTT 5).

A persistent session (`clean_start=False`, long expiry) so commands sent while the
speaker was off are delivered when it returns. Commands are acknowledged only after
they were executed and recorded: if the power goes in between, the broker sends the
command again and the recorded id keeps it from running twice. Retained `state` and
a last-will `availability` tell the parent's app what it needs on opening.
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

from .config import MqttConfig
from .protocol import DeviceState, Event, Reply, device_topic, valid_id

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


class MqttLink:
    def __init__(self, config: MqttConfig, device_id: str, on_command: Callable[[Incoming], None]) -> None:
        self.config = config
        self.device_id = device_id
        self._on_command = on_command
        self.connected = threading.Event()
        self._last_state: DeviceState | None = None
        self._lock = threading.Lock()
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"hml-device-{device_id}",
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
        self._client = client

    def topic(self, *parts: str) -> str:
        return device_topic(self.device_id, *parts)

    def start(self) -> None:
        """Connect in the background; paho reconnects with backoff whenever the link drops."""
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.config.session_expiry
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
        client.subscribe(self.topic("cmd", "#"), qos=1)
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
        prefix = self.topic("cmd") + "/"
        if not message.topic.startswith(prefix):
            client.ack(message.mid, message.qos)
            return
        props = getattr(message, "properties", None)
        self._on_command(
            Incoming(
                name=message.topic[len(prefix) :],
                payload=bytes(message.payload),
                mid=message.mid,
                qos=message.qos,
                response_topic=getattr(props, "ResponseTopic", None),
                correlation_data=getattr(props, "CorrelationData", None),
            )
        )

    def ack(self, incoming: Incoming) -> None:
        if incoming.qos > 0:
            self._client.ack(incoming.mid, incoming.qos)

    # -- Publisher port ------------------------------------------------------------

    def event(self, event: Event) -> None:
        self._client.publish(self.topic("event", event.NAME), event.model_dump_json(), qos=1)

    def state(self, state: DeviceState) -> None:
        with self._lock:
            self._last_state = state
        self._publish_state(state)

    def _publish_state(self, state: DeviceState) -> None:
        self._client.publish(self.topic("state"), state.model_dump_json(), qos=1, retain=True)

    def reply(self, reply: Reply, incoming: Incoming | None = None) -> None:
        """To the MQTT 5 response topic if the sender gave one under this device's reply/
        subtree (the ACLs allow no other), else reply/<id>; a reply
        with no id (the payload was not even JSON) goes out as an `error` event."""
        properties = None
        own_replies = self.topic("reply") + "/"
        if incoming is not None and incoming.response_topic and incoming.response_topic.startswith(own_replies):
            topic = incoming.response_topic
            if incoming.correlation_data is not None:
                properties = Properties(PacketTypes.PUBLISH)
                properties.CorrelationData = incoming.correlation_data
        elif valid_id(reply.id):
            topic = self.topic("reply", str(reply.id))
        else:
            topic = self.topic("event", "error")
        self._client.publish(topic, reply.model_dump_json(), qos=1, properties=properties)
