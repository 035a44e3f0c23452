"""A family broker as one region of a fleet: the Mosquitto bridge that links it to a fleet broker.

Speakers and their parents stay on their regional broker (that is where the connections,
sessions and TLS handshakes cost); the bridge carries, for this region's speakers only,
commands in from the fleet broker (the studio pushing a voice, support tools) and their
replies, events, state and availability out. Topics are listed per speaker from the
registry, so a region receives only its own speakers' commands. `fleet_acl` is the block
the fleet broker's ACL file needs for the bridge's account. docs/fleet.md shows the layout.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from hearmylove.errors import ConfigError
from hearmylove.protocol import TOPIC_ROOT

from .families import Registry

OUT = ("reply/#", "event/#", "state", "availability")
"""What a speaker publishes: forwarded to the fleet broker."""


class Bridge(BaseModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,62}$")
    """The connection's name, e.g. the region (eu-1)."""
    address: str
    """The fleet broker, host:port."""
    username: str = Field(min_length=1)
    """The bridge's account on the fleet broker."""
    password: str = Field(min_length=1)
    ca_file: str | None = None
    """CA of the fleet broker's certificate; None with tls=False (loopback tests only)."""
    tls: bool = True


def devices(registry: Registry) -> list[str]:
    return sorted(d for family in registry.families.values() for d in family.devices)


def bridge_conf(registry: Registry, bridge: Bridge) -> str:
    """The `connection` section to append to this region's mosquitto.conf."""
    if not re.fullmatch(r"[^\s:]+:\d{1,5}", bridge.address):
        raise ConfigError(f"bridge address {bridge.address!r} must be host:port, e.g. fleet.example.org:8883")
    if bridge.tls and not bridge.ca_file:
        raise ConfigError("a bridge over TLS needs the fleet broker's CA certificate (--ca)")
    speakers = devices(registry)
    if not speakers:
        raise ConfigError("this broker has no speakers yet: add families first, then write the bridge")
    lines = [
        f"# Hear My Love: bridge {bridge.name} to the fleet broker {bridge.address} ({len(speakers)} speakers)",
        "# (written by hearmylove-remote broker bridge; write it again when speakers are added)",
        f"connection {bridge.name}",
        f"address {bridge.address}",
        "bridge_protocol_version mqttv50",
        "cleansession false",
        "try_private true",
        "notifications false",
        "restart_timeout 2 60",
        f"remote_clientid {bridge.username}",
        f"remote_username {bridge.username}",
        f"remote_password {bridge.password}",
    ]
    if bridge.tls:
        lines += [f"bridge_cafile {bridge.ca_file}", "bridge_insecure false", "bridge_tls_version tlsv1.2"]
    for device in speakers:
        lines.append(f"topic {TOPIC_ROOT}/{device}/cmd/# in 1")
        lines += [f"topic {TOPIC_ROOT}/{device}/{t} out 1" for t in OUT]
    return "\n".join(lines) + "\n"


def fleet_acl(registry: Registry, bridge: Bridge) -> str:
    """The fleet broker's ACL block for the bridge's account: this region's speakers, both ways."""
    lines = [f"# region bridge {bridge.name}", f"user {bridge.username}"]
    for device in devices(registry):
        lines.append(f"topic read {TOPIC_ROOT}/{device}/cmd/#")
        lines += [f"topic write {TOPIC_ROOT}/{device}/{t}" for t in OUT]
    return "\n".join(lines) + "\n"
