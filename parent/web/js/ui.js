// Drawing the page: the speakers, the events feed and the story list. No MQTT here; app.js
// owns the state and calls these with plain data. Everything shown is built with
// textContent (never innerHTML): titles and messages come from the network.

import { clock, t } from "./i18n.js";

export const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A status line under a form: tone "" (plain), "wait", "good" or "bad" (red, with role=alert text). */
export function showStatus(node, text, tone = "") {
  node.textContent = text;
  node.dataset.tone = tone;
}

// -- speakers -------------------------------------------------------------------------

function availabilityText(online) {
  if (online === true) return t("speaker.online");
  if (online === false) return t("speaker.offline");
  return t("speaker.unknown");
}

function storyLine(device, durationOf) {
  const state = device.state;
  if (!state || !state.story_id || !["rendering", "playing", "paused"].includes(state.state)) return "";
  const duration = durationOf(state.story_id);
  const elapsed = state.state === "playing" ? (Date.now() - device.positionAt) / 1000 : 0;
  const now = Math.min((device.position ?? state.position) + elapsed, duration ?? Infinity);
  const position = clock(now) + (duration ? ` / ${clock(duration)}` : "");
  return t("speaker.story", { title: state.title ?? state.story_id, position });
}

function settingsLine(state) {
  if (!state) return "";
  const percent = (v) => `${Math.round(v * 100)}%`;
  const parts = [`${t("speaker.volume")} ${percent(state.volume)}`, t("speaker.max_volume", { value: percent(state.max_volume) })];
  const quiet = state.quiet_hours;
  if (quiet) parts.push(t("speaker.quiet", { start: quiet.start.slice(0, 5), end: quiet.end.slice(0, 5) }));
  return parts.join(" · ");
}

function speakerCard(list, deviceId, onSelect) {
  let card = list.querySelector(`li[data-device="${CSS.escape(deviceId)}"]`);
  if (card) return card;
  card = el("li", "speaker");
  card.dataset.device = deviceId;
  const head = el("button", "speaker-head");
  head.type = "button";
  const icon = el("img", "speaker-icon");
  icon.src = "icons/speaker.svg";
  icon.alt = "";
  head.append(icon, el("span", "speaker-name", deviceId), el("span", "badge"));
  head.addEventListener("click", () => onSelect(deviceId));
  card.append(head, el("p", "speaker-state"), el("p", "speaker-story"), el("p", "speaker-volume muted"));
  list.append(card);
  return card;
}

/** devices: Map id -> {online, state, position}; controls: the panel shown in the selected card. */
export function renderSpeakers({ devices, selected, durationOf, onSelect, controls }) {
  const list = $("speakers");
  $("speakers-none").hidden = devices.size > 0;
  for (const [deviceId, device] of [...devices].sort(([a], [b]) => a.localeCompare(b))) {
    const card = speakerCard(list, deviceId, onSelect);
    const head = card.querySelector(".speaker-head");
    head.setAttribute("aria-pressed", String(deviceId === selected));
    head.setAttribute("aria-label", `${t("speakers.choose", { device: deviceId })}: ${availabilityText(device.online)}`);
    const badge = card.querySelector(".badge");
    badge.textContent = availabilityText(device.online);
    badge.dataset.online = String(device.online);
    const stateName = device.state?.state;
    card.dataset.state = stateName ?? "unknown";
    card.querySelector(".speaker-state").textContent = stateName ? t(`state.${stateName}`) : "";
    card.querySelector(".speaker-story").textContent = storyLine(device, durationOf);
    card.querySelector(".speaker-volume").textContent = settingsLine(device.state);
    card.classList.toggle("selected", deviceId === selected);
    if (deviceId === selected && controls.parentElement !== card) card.append(controls);
  }
  controls.hidden = !selected;
}

// -- events feed ----------------------------------------------------------------------

const FEED_LIMIT = 60;
const feed = []; // newest first: {at, key, params, tone, device}

/** Keys and parameters, not finished text: the feed redraws in the other language. */
export function addFeed(entry) {
  feed.unshift({ at: new Date(), tone: "", params: {}, ...entry });
  feed.length = Math.min(feed.length, FEED_LIMIT);
  renderFeed();
}

export function clearFeed() {
  feed.length = 0;
  renderFeed();
}

export function renderFeed() {
  const list = $("feed");
  const manyDevices = new Set(feed.map((e) => e.device)).size > 1;
  list.replaceChildren(
    ...feed.map((entry) => {
      const item = el("li", "event");
      item.dataset.tone = entry.tone;
      const stamp = el("time", "", entry.at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
      stamp.dateTime = entry.at.toISOString();
      item.append(stamp, el("span", "event-text", t(entry.key, entry.params)));
      if (manyDevices && entry.device) item.append(el("span", "event-device", entry.device));
      return item;
    }),
  );
  $("feed-empty").hidden = feed.length > 0;
}

// -- stories --------------------------------------------------------------------------

/** stories: [{story_id, title, ready, duration, times_finished}] as story.list returns them. */
export function renderStories(stories, onTell) {
  const list = $("stories");
  if (!stories.length) {
    list.replaceChildren(el("li", "muted", t("stories.none")));
    return;
  }
  list.replaceChildren(
    ...stories.map((story) => {
      const item = el("li", "story");
      const meta = [story.ready ? t("stories.ready") : t("stories.not_ready")];
      if (story.duration) meta.push(clock(story.duration));
      if (story.times_finished) meta.push(t("stories.finished", { count: story.times_finished }));
      const words = el("div", "story-words");
      words.append(el("span", "story-title", story.title), el("span", "story-meta muted", meta.join(" · ")));
      const tell = el("button", "btn small accent", t("story.tell_now"));
      tell.type = "button";
      tell.setAttribute("aria-label", t("stories.tell", { title: story.title }));
      tell.addEventListener("click", () => onTell(story));
      item.append(words, tell);
      return item;
    }),
  );
}
