// Protocol v1 as the parent's phone speaks it (device/hearmylove/protocol.py is the source
// of truth; `hearmylove.protocol.json_schema()` exports it). Pure functions, no I/O.

export const TOPIC_ROOT = "hml/v1";

/** What a parent subscribes to: the broker's ACLs deliver only the family's own speakers. */
export const SUBSCRIPTIONS = ["state", "availability", "event/#", "reply/#"].map((s) => `${TOPIC_ROOT}/+/${s}`);

export function commandTopic(deviceId, name) {
  return `${TOPIC_ROOT}/${deviceId}/cmd/${name}`;
}

/** "hml/v1/kid-007/event/story.started" -> {deviceId, kind: "event", name: "story.started"}. */
export function parseTopic(topic) {
  const parts = topic.split("/");
  if (parts.length < 4 || `${parts[0]}/${parts[1]}` !== TOPIC_ROOT) return null;
  return { deviceId: parts[2], kind: parts[3], name: parts.slice(4).join("/") };
}

function randomHex(bytes) {
  const data = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(data, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A command id: 1-64 of A-Z a-z 0-9 _ . : - (a repeated id is answered, never run twice). */
export function newCommandId() {
  return `web-${Date.now().toString(36)}-${randomHex(4)}`;
}

/** "The Sleepy Owl!" -> "the-sleepy-owl-3f9a1c"; a title with no Latin letters -> "story-3f9a1c". */
export function storyIdFor(title) {
  const slug = title
    .normalize("NFKD")
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 40)
    .replace(/-+$/, "");
  return `${slug || "story"}-${randomHex(3)}`;
}

/** A datetime-local value ("2026-11-21T19:30") -> ISO 8601 with this browser's offset. */
export function isoWithOffset(localValue) {
  const date = new Date(localValue);
  if (Number.isNaN(date.getTime())) return null;
  const pad = (n) => String(Math.floor(Math.abs(n))).padStart(2, "0");
  const offset = -date.getTimezoneOffset();
  const sign = offset >= 0 ? "+" : "-";
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}` +
    `${sign}${pad(offset / 60)}:${pad(offset % 60)}`
  );
}

/** CONNACK reason codes that mean "who are you?" rather than "no broker there" (MQTT 3.1.1 and 5). */
const LOGIN_REFUSED = new Set([4, 5, 134, 135]);

export function isLoginRefused(error) {
  return Boolean(error) && LOGIN_REFUSED.has(error.code);
}
