// The phone's MQTT link (MQTT.js over WebSockets, MQTT 5): log in, subscribe to the family's
// speakers, send a command and wait for the reply on reply/<id>, pass everything else on.

import mqtt from "../node_modules/mqtt/dist/mqtt.esm.js";
import * as p from "./protocol.js";

const SESSION_TAKEN_OVER = 0x8e;

export class LoginError extends Error {
  /** kind: "unreachable" (no broker answered) or "refused" (the broker said no to these credentials). */
  constructor(kind, detail) {
    super(`${kind}: ${detail}`);
    this.kind = kind;
    this.detail = detail;
  }
}

export class ReplyTimeout extends Error {
  constructor(command, seconds) {
    super(`no reply to ${command} within ${seconds} s`);
    this.command = command;
    this.seconds = seconds;
  }
}

function decode(kind, bytes) {
  const text = new TextDecoder().decode(bytes);
  if (kind === "availability") return text;
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return text;
  }
}

/** Emits "message" ({deviceId, kind, name, payload}) and "status" ({online}). */
export class Link extends EventTarget {
  constructor(client) {
    super();
    this.client = client;
    this.pending = new Map();
    client.on("message", (topic, bytes) => this._message(topic, bytes));
    client.on("connect", () => this._status(true));
    client.on("offline", () => this._status(false));
    client.on("close", () => this._status(false));
    // The broker binds client ids to accounts: the same account logged in elsewhere took this
    // session over. Reconnecting would take it back, and the other would again, for ever.
    client.on("disconnect", (packet) => {
      if (packet.reasonCode !== SESSION_TAKEN_OVER) return;
      this.takenOver = true;
      client.end(true);
      this._status(false);
    });
  }

  /** Resolves with a connected, subscribed Link, or rejects with a LoginError. */
  static connect({ url, username, password, timeoutMs = 10000 }) {
    return new Promise((resolve, reject) => {
      let client;
      try {
        client = mqtt.connect(url, {
          username,
          password,
          protocolVersion: 5,
          clientId: `hml-web-${p.newCommandId().slice(4)}`,
          clean: true,
          keepalive: 30,
          reconnectPeriod: 0, // the first attempt tells the user what is wrong instead of retrying
          connectTimeout: timeoutMs,
        });
      } catch (err) {
        reject(new LoginError("unreachable", err.message));
        return;
      }
      let settled = false;
      const timer = setTimeout(() => fail("unreachable", `no answer within ${timeoutMs / 1000} s`), timeoutMs + 1000);
      const fail = (kind, detail) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        client.end(true);
        reject(new LoginError(kind, detail));
      };
      client.on("error", (err) => fail(p.isLoginRefused(err) ? "refused" : "unreachable", err.message || String(err)));
      // A refused CONNACK arrives as an "error" just before the close; let it speak first.
      client.on("close", () => setTimeout(() => fail("unreachable", "the connection closed"), 50));
      client.once("connect", () => {
        client.subscribe(p.SUBSCRIPTIONS, { qos: 1 }, (err) => {
          if (err) {
            fail("refused", `subscribing failed: ${err.message}`);
            return;
          }
          settled = true;
          clearTimeout(timer);
          client.options.reconnectPeriod = 3000; // from now on, ride out network drops
          resolve(new Link(client));
        });
      });
    });
  }

  /** Publish cmd/<name> with a fresh id; resolves with the device's reply {id, ok, result | error}.
   * `onSent` is called once the broker has the command (a voice pack takes a while to upload). */
  send(deviceId, name, fields = {}, timeoutSeconds = 30, onSent = null) {
    const id = p.newCommandId();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ReplyTimeout(name, timeoutSeconds));
      }, timeoutSeconds * 1000);
      this.pending.set(id, (reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
      const command = JSON.stringify({ id, sent_at: new Date().toISOString(), ...fields });
      this.client.publish(p.commandTopic(deviceId, name), command, { qos: 1 }, (err) => {
        if (!err) return onSent?.();
        clearTimeout(timer);
        this.pending.delete(id);
        reject(err);
      });
    });
  }

  close() {
    this.pending.clear(); // their timers still reject them, into a page that has moved on
    this.client.end(true);
  }

  _message(topic, bytes) {
    const where = p.parseTopic(topic);
    if (!where || where.kind === "cmd") return;
    const payload = decode(where.kind, bytes);
    if (where.kind === "reply") {
      const waiting = this.pending.get(where.name);
      if (waiting) {
        this.pending.delete(where.name);
        waiting(payload);
      }
    }
    this.dispatchEvent(new CustomEvent("message", { detail: { ...where, payload } }));
  }

  _status(online) {
    this.dispatchEvent(new CustomEvent("status", { detail: { online } }));
  }
}
