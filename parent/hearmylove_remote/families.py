"""The family broker's accounts: which parents may talk to which speakers.

The registry (`families.json` in the broker's folder) is the source of truth; the ACL
file and the Mosquitto config are written from it every time it changes, and each new
account's password is hashed into Mosquitto's password file and shown once.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import secrets
import signal
from pathlib import Path

from pydantic import BaseModel, Field

from hearmylove.broker import Account, Listener, acl_text, mosquitto_conf, set_password
from hearmylove.errors import BrokerError, ConfigError
from hearmylove.protocol import TOPIC_ROOT
from hearmylove.tls import make_tls

from . import pairing

Name = str
_NAME = r"^[a-z0-9][a-z0-9_\-]{0,62}$"


class Family(BaseModel):
    parents: list[Name] = Field(default_factory=list)
    devices: list[Name] = Field(default_factory=list)


class Registry(BaseModel):
    host: str
    """The broker's public name or address: its TLS certificate is made for it."""
    mqtt_port: int = 8883
    wss_port: int = 8884
    bind: str = ""
    """Address to listen on ("" for all)."""
    persistence: Path | None = None
    """Where Mosquitto keeps sessions and queued commands (None: `data/` in the broker's folder)."""
    app_url: str | None = None
    """Where parents open the web app (https, so phones can install it); None: https://<host>/."""
    families: dict[Name, Family] = Field(default_factory=dict)
    studios: list[Name] = Field(default_factory=list)
    """Studio accounts: may send any speaker here a voice pack (voice.install) and read the reply, nothing else."""

    @property
    def web_app(self) -> str:
        return self.app_url or f"https://{_url_host(self.host)}/"

    @property
    def websocket_url(self) -> str:
        """The TLS WebSockets listener the phone app logs in to."""
        return f"wss://{_url_host(self.host)}:{self.wss_port}"

    def parents(self) -> set[str]:
        return {p for family in self.families.values() for p in family.parents}


def studio_acl(studios: list[str]) -> str:
    """voice.install to any speaker, and the replies; no stories, no settings, no events."""
    lines = []
    for name in studios:
        lines += [
            f"user {name}",
            f"topic write {TOPIC_ROOT}/+/cmd/voice.install",
            f"topic read {TOPIC_ROOT}/+/reply/#",
            "",
        ]
    return ("\n" + "\n".join(lines)) if lines else ""


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class Broker:
    """A broker folder: registry, passwords, ACL, TLS files and mosquitto.conf."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.registry_file = self.folder / "families.json"

    def init(
        self,
        host: str,
        mqtt_port: int = 8883,
        wss_port: int = 8884,
        bind: str = "",
        persistence: Path | None = None,
        app_url: str | None = None,
    ) -> Registry:
        if self.registry_file.exists():
            raise ConfigError(f"{self.registry_file} exists already; this broker is set up")
        if app_url is not None and not app_url.startswith(("https://", "http://")):
            raise ConfigError(f"--app-url {app_url!r} must be a web address, e.g. https://{host}/")
        registry = Registry(
            host=host,
            mqtt_port=mqtt_port,
            wss_port=wss_port,
            bind=bind,
            persistence=persistence,
            app_url=app_url,
        )
        self.save(registry)
        return registry

    def load(self) -> Registry:
        try:
            return Registry.model_validate_json(self.registry_file.read_text())
        except FileNotFoundError:
            raise ConfigError(f"no broker in {self.folder}; run: hearmylove-remote broker init") from None

    def save(self, registry: Registry) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.registry_file.with_suffix(".tmp")
        tmp.write_text(registry.model_dump_json(indent=2) + "\n")
        os.replace(tmp, self.registry_file)
        self._write(registry)

    def _write(self, registry: Registry) -> None:
        tls = make_tls(self.folder / "tls", [registry.host])
        listeners = [
            Listener(registry.mqtt_port, tls=True, bind=registry.bind),
            Listener(registry.wss_port, websockets=True, tls=True, bind=registry.bind),
        ]
        accounts = [
            Account(parent, "", devices=tuple(family.devices))
            for family in registry.families.values()
            for parent in family.parents
        ]
        (self.folder / "acl").write_text(acl_text(accounts) + studio_acl(registry.studios))
        persistence = registry.persistence or self.folder / "data"
        persistence.mkdir(parents=True, exist_ok=True)
        (self.folder / "mosquitto.conf").write_text(mosquitto_conf(self.folder, listeners, tls, persistence))
        self._share_with_mosquitto(persistence)

    def _share_with_mosquitto(self, persistence: Path) -> None:
        """Mosquitto reads these files, and writes its database, as its own user after it drops root."""
        try:
            gid = grp.getgrnam("mosquitto").gr_gid
            uid = pwd.getpwnam("mosquitto").pw_uid
        except KeyError:
            return
        if os.geteuid() == 0:
            os.chown(persistence, uid, gid)
            persistence.chmod(0o700)
        for name in ("passwords", "acl", "tls/server.key"):
            path = self.folder / name
            if path.exists() and os.geteuid() == 0:
                os.chown(path, -1, gid)
                path.chmod(0o640)

    def _add_account(self, username: str) -> str:
        password = secrets.token_urlsafe(18)
        set_password(self.folder / "passwords", username, password)
        return password

    def _check_new(self, registry: Registry, name: str) -> None:
        import re

        if not re.match(_NAME, name):
            raise ConfigError(
                f"{name!r} is not a valid name: use 1-63 of a-z, 0-9, _ and -, starting with a letter or digit"
            )
        taken = {n for f in registry.families.values() for n in (*f.parents, *f.devices)} | set(registry.families)
        taken |= set(registry.studios)
        if name in taken:
            raise ConfigError(f"the name {name!r} is taken already")

    def add_family(self, family: str, parents: list[str], devices: list[str]) -> dict[str, str]:
        """Create a family with its parents and speakers; returns each new account's password."""
        registry = self.load()
        self._check_new(registry, family)
        for name in (*parents, *devices):
            self._check_new(registry, name)
        if len(set(parents) | set(devices)) != len(parents) + len(devices):
            raise ConfigError("a name is given twice")
        registry.families[family] = Family(parents=list(parents), devices=list(devices))
        passwords = {name: self._add_account(name) for name in (*parents, *devices)}
        self.save(registry)
        return passwords

    def add_member(self, family: str, name: str, kind: str) -> str:
        registry = self.load()
        if family not in registry.families:
            raise ConfigError(f"no family {family!r}; families: {', '.join(registry.families) or 'none yet'}")
        self._check_new(registry, name)
        members = registry.families[family]
        (members.parents if kind == "parent" else members.devices).append(name)
        password = self._add_account(name)
        self.save(registry)
        return password

    def add_studio(self, name: str) -> str:
        """An account for the studio service's pushes: signed packs only, to whichever speaker a
        pack names (the speaker checks the signature and that the pack's consent names it)."""
        registry = self.load()
        self._check_new(registry, name)
        registry.studios.append(name)
        password = self._add_account(name)
        self.save(registry)
        return password

    def new_password(self, name: str) -> str:
        """Give an account a new password: the old one (and every pairing link holding it) is
        refused from the broker's next reload on."""
        registry = self.load()
        members = {n for f in registry.families.values() for n in (*f.parents, *f.devices)} | set(registry.studios)
        if name not in members:
            raise ConfigError(f"no account {name!r}; accounts: {', '.join(sorted(members)) or 'none yet'}")
        return self._add_account(name)

    def pairing_link(self, registry: Registry, parent: str, password: str) -> str:
        """The link that pairs this parent's phone with the web app (see pairing.py)."""
        return pairing.link(
            registry.web_app, pairing.Pairing(url=registry.websocket_url, username=parent, password=password)
        )

    def pairing_png(self, parent: str) -> Path:
        """Where the parent's QR code goes: in the broker's folder, readable by root only."""
        return self.folder / "pairing" / f"{parent}.png"

    @property
    def pid_file(self) -> Path:
        """Written by the family broker itself (`pid_file` in its mosquitto.conf)."""
        return self.folder / "mosquitto.pid"

    def reload(self) -> bool:
        """Ask this folder's Mosquitto, and no other, to re-read passwords and ACLs (SIGHUP).
        False if it is not running (it reads them when it starts)."""
        try:
            pid = int(self.pid_file.read_text().strip())
            if Path(f"/proc/{pid}/comm").read_text().strip() != "mosquitto":
                return False  # a stale pid file: the number now belongs to another program
            os.kill(pid, signal.SIGHUP)
            return True
        except (OSError, ValueError):
            return False

    def describe(self) -> str:
        registry = self.load()
        return json.dumps(registry.model_dump(mode="json")["families"], indent=2)


__all__ = ["Broker", "BrokerError", "Family", "Registry"]
