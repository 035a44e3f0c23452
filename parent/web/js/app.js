// The parent's app: logs in, keeps what the speakers said, and turns taps into commands.
// State lives here; link.js speaks MQTT, ui.js draws, i18n.js holds the words.

import * as i18n from "./i18n.js";
import { Link, LoginError, ReplyTimeout } from "./link.js";
import { forgetHash, readPairing } from "./pairing.js";
import * as p from "./protocol.js";
import { bindSettings, fillSettings } from "./settings.js";
import { $, addFeed, clearFeed, renderFeed, renderSpeakers, renderStories, showStatus } from "./ui.js";
import { bindVoices, fillVoices } from "./voices.js";

const LOGIN_KEY = "hml.login";
const devices = new Map(); // device id -> {online, state, position, positionAt}
const stories = new Map(); // story id -> {story_id, title, duration, ready, times_finished}
const started = new Set(); // story ids this page saw start
let link = null;
let selected = null;
let lastStory = null; // the story this phone sent last: "Tell now" and "Schedule" act on it

// -- log in ---------------------------------------------------------------------------

/** The broker on the host that served this page: TLS WebSockets (8884) behind https, plain 9001 in development. */
function defaultUrl() {
  const host = location.hostname || "localhost";
  return location.protocol === "https:" ? `wss://${host}:8884` : `ws://${host}:9001`;
}

function savedLogin() {
  try {
    return JSON.parse(localStorage.getItem(LOGIN_KEY)) ?? {};
  } catch {
    return {};
  }
}

function saveLogin({ url, username, password, remember }) {
  localStorage.setItem(LOGIN_KEY, JSON.stringify(remember ? { url, username, password, remember } : { url, username }));
}

async function logIn(event) {
  event?.preventDefault();
  const status = $("login-status");
  const url = $("login-url").value.trim();
  const username = $("login-user").value.trim();
  const password = $("login-pass").value;
  const remember = $("login-remember").checked;
  if (!url || !username || !password) return showStatus(status, i18n.t("login.missing"), "bad");
  if (!/^wss?:\/\//i.test(url)) return showStatus(status, i18n.t("login.bad_url", { example: defaultUrl() }), "bad");
  $("login-submit").disabled = true;
  showStatus(status, i18n.t("login.connecting"), "wait");
  try {
    link = await Link.connect({ url, username, password });
  } catch (err) {
    const key = err instanceof LoginError && err.kind === "refused" ? "login.refused" : "login.unreachable";
    showStatus(status, i18n.t(key, { url, detail: err.detail ?? err.message }), "bad");
    return;
  } finally {
    $("login-submit").disabled = false;
  }
  saveLogin({ url, username, password, remember });
  showStatus(status, "");
  link.addEventListener("message", (e) => onMessage(e.detail));
  link.addEventListener("status", (e) => showConnection(e.detail.online));
  $("conn-user").textContent = username;
  showConnection(true);
  $("login-view").hidden = true;
  $("app-view").hidden = false;
}

function logOut() {
  link?.close();
  link = null;
  devices.clear();
  stories.clear();
  started.clear();
  selected = null;
  lastStory = null;
  clearFeed();
  $("story-actions").hidden = true;
  $("stories").replaceChildren();
  const { url, username } = savedLogin();
  saveLogin({ url, username, remember: false });
  $("login-pass").value = "";
  $("login-remember").checked = false;
  $("speakers").replaceChildren();
  $("app-view").hidden = true;
  $("login-view").hidden = false;
}

function showConnection(online) {
  $("conn-dot").dataset.online = String(online);
  $("conn-text").textContent = i18n.t(online ? "conn.online" : "conn.reconnecting");
}

// -- what the speakers say ------------------------------------------------------------

function device(deviceId) {
  if (!devices.has(deviceId)) devices.set(deviceId, { online: null, state: null, position: null, positionAt: 0 });
  return devices.get(deviceId);
}

function titleOf(storyId) {
  return stories.get(storyId)?.title ?? storyId;
}

const EVENTS = {
  "story.ready": (e) => ({ key: "feed.ready", params: { title: e.title, duration: i18n.clock(e.duration) } }),
  "story.started": (e) => ({
    key: e.position > 1 ? "feed.started_at" : "feed.started",
    params: { title: e.title, position: i18n.clock(e.position) },
  }),
  "story.finished": (e) => ({ key: "feed.finished", params: { title: e.title }, tone: "good" }),
  "story.stopped": (e) => ({
    key: e.reason === "stopped" ? "feed.stopped" : `feed.stopped.${e.reason}`,
    params: { title: titleOf(e.story_id), position: i18n.clock(e.position) },
  }),
  "button.heart": () => ({ key: "feed.heart", tone: "heart" }),
  error: (e) => ({ key: "feed.error", params: { message: e.message }, tone: "bad" }),
};

function onEvent(deviceId, name, event) {
  const speaker = device(deviceId);
  if ("story_id" in event && "title" in event) {
    stories.set(event.story_id, { ...stories.get(event.story_id), story_id: event.story_id, title: event.title });
  }
  if (name === "story.ready") stories.get(event.story_id).duration = event.duration;
  if ("position" in event) Object.assign(speaker, { position: event.position, positionAt: Date.now() });
  if (name === "story.started") started.add(event.story_id);
  const describe = EVENTS[name];
  // A story told at once renders while it plays: its "ready" is no news then.
  const noNews = name === "story.ready" && started.has(event.story_id);
  if (describe && !noNews) addFeed({ ...describe(event), at: new Date(event.at ?? Date.now()), device: deviceId });
  if ((name === "story.finished" || name === "story.ready") && deviceId === selected) listStories();
}

function onMessage({ deviceId, kind, name, payload }) {
  const speaker = device(deviceId);
  if (kind === "availability") {
    const online = payload === "online";
    if (speaker.online !== null && speaker.online !== online) {
      addFeed({ key: online ? "feed.online" : "feed.offline", params: { device: deviceId }, device: deviceId });
    }
    speaker.online = online;
  } else if (kind === "state" && payload && typeof payload === "object") {
    const voiceChanged = speaker.state && speaker.state.active_voice !== payload.active_voice;
    Object.assign(speaker, { state: payload, position: payload.position, positionAt: Date.now() });
    if (deviceId === selected) fillSettings(payload);
    if (deviceId === selected && voiceChanged) listVoices();
  } else if (kind === "event" && payload && typeof payload === "object") {
    onEvent(deviceId, name, payload);
  }
  if (!selected) select(deviceId);
  else drawSpeakers();
}

function drawSpeakers() {
  renderSpeakers({
    devices,
    selected,
    durationOf: (id) => stories.get(id)?.duration,
    onSelect: select,
    controls: $("controls"),
  });
  const state = devices.get(selected)?.state;
  if (state) {
    // Only what the speaker can do right now; the device still has the last word (and says why not).
    $("pause").hidden = state.state !== "playing";
    $("resume").hidden = state.state !== "paused";
    $("stop").hidden = !["rendering", "playing", "paused"].includes(state.state);
    $("playback").hidden = $("pause").hidden && $("resume").hidden && $("stop").hidden;
  }
  const slider = $("volume");
  if (state && document.activeElement !== slider) {
    slider.value = Math.round(state.volume * 100);
    $("volume-value").textContent = `${slider.value}%`;
  }
}

function select(deviceId) {
  selected = deviceId;
  drawSpeakers();
  const state = devices.get(deviceId)?.state;
  if (state) fillSettings(state, { force: true });
  listStories();
  listVoices();
}

// -- commands -------------------------------------------------------------------------

/** Send a command to the selected speaker; show its reply (or refusal, by the device's words).
 * `onSent` (the broker has it) may return a function called once the reply is in; `quiet` shows
 * only a refusal (a background refresh must not wipe what the line says). */
async function command(name, fields, statusNode, describeOk = () => i18n.t("reply.ok"), options = {}) {
  const { timeoutSeconds = 30, onSent = null, quiet = false } = options;
  const deviceId = selected;
  if (!deviceId || !link) {
    showStatus(statusNode, i18n.t("no_speaker"), "bad");
    return null;
  }
  if (!onSent && !quiet) showStatus(statusNode, i18n.t("reply.waiting"), "wait");
  let reply;
  let stop = null;
  try {
    reply = await link.send(deviceId, name, fields, timeoutSeconds, onSent && (() => (stop = onSent())));
  } catch (err) {
    const text =
      err instanceof ReplyTimeout ? i18n.t("reply.timeout", { command: name, seconds: err.seconds }) : err.message;
    showStatus(statusNode, text, "bad");
    return null;
  } finally {
    stop?.();
  }
  if (reply.ok) {
    if (!quiet) showStatus(statusNode, describeOk(reply.result ?? {}), "good");
    return reply;
  }
  const message = reply.error?.message ?? reply.error?.code ?? "?";
  showStatus(statusNode, i18n.t("reply.refused", { message }), "bad");
  addFeed({ key: "feed.refused", params: { command: name, message }, tone: "bad", device: deviceId });
  return reply;
}

async function sendStory(event) {
  event.preventDefault();
  const title = $("story-title").value.trim();
  const text = $("story-text").value.trim();
  const status = $("story-status");
  if (!title || !text) return showStatus(status, i18n.t("story.missing"), "bad");
  const story = { story_id: p.storyIdFor(title), title, text, lang: $("story-lang").value };
  if ($("story-voice").value) story.voice = $("story-voice").value;
  $("story-send").disabled = true;
  try {
    const reply = await command("story.put", story, status, (r) =>
      i18n.t(r.new === false ? "story.updated" : "story.sent", { title }),
    );
    if (reply?.ok) {
      lastStory = { story_id: story.story_id, title };
      stories.set(story.story_id, { story_id: story.story_id, title, ready: false, times_finished: 0 });
      $("story-actions").hidden = false;
      $("story-form").reset(); // sent: a second tap would send a second copy
      listStories();
    }
  } finally {
    $("story-send").disabled = false;
  }
}

function tell(story, { at = null, statusNode = $("story-status") } = {}) {
  const fields = { story_id: story.story_id, ...(at ? { at } : {}) };
  return command("story.tell", fields, statusNode, (r) =>
    r.scheduled
      ? i18n.t("story.scheduled", { when: i18n.when(new Date(r.scheduled)) })
      : i18n.t("story.told", { title: story.title }),
  );
}

function schedule() {
  const at = p.isoWithOffset($("tell-at").value);
  if (!lastStory) return;
  if (!at) return showStatus($("story-status"), i18n.t("story.pick_time"), "bad");
  tell(lastStory, { at });
}

async function listStories() {
  const reply = await command("story.list", {}, $("stories-status"), () => "");
  if (!reply?.ok) return;
  for (const story of reply.result.stories) stories.set(story.story_id, story);
  renderStories(reply.result.stories, (story) => tell(story, { statusNode: $("stories-status") }));
  drawSpeakers();
}

async function listVoices() {
  const reply = await command("voice.list", {}, $("voice-status"), undefined, { quiet: true });
  if (reply?.ok) fillVoices(reply.result);
}

function setVolume() {
  const volume = Number($("volume").value) / 100;
  command("volume.set", { volume }, $("controls-status"), () => ""); // the card shows the volume applied
}

// -- start ----------------------------------------------------------------------------

function redraw() {
  i18n.applyTo(document);
  document.title = i18n.t("app.title");
  renderFeed();
  drawSpeakers();
  if (link) showConnection(link.client.connected);
}

/** The pairing in the address (taken out of it at once), or null. */
function pairingFromLink() {
  const pairing = readPairing(location.hash);
  if (!pairing) return null;
  forgetHash();
  if (!pairing.error) return pairing;
  showStatus($("login-status"), i18n.t("login.bad_pairing"), "bad");
  return null;
}

/** A pairing link fills the login in; the phone remembers it (it is the family's app now). */
function fillLogin({ url, username, password }) {
  $("login-url").value = url;
  $("login-user").value = username;
  $("login-pass").value = password;
  $("login-remember").checked = true;
}

function start() {
  const login = savedLogin();
  $("login-url").value = login.url ?? defaultUrl();
  $("login-user").value = login.username ?? "";
  $("login-pass").value = login.remember ? (login.password ?? "") : "";
  $("login-remember").checked = Boolean(login.remember);
  const paired = pairingFromLink();
  if (paired) fillLogin(paired);
  $("login-form").addEventListener("submit", logIn);
  $("logout").addEventListener("click", logOut);
  $("lang").addEventListener("click", () => {
    i18n.setLang(i18n.lang() === "zh" ? "en" : "zh");
    redraw();
  });
  $("story-form").addEventListener("submit", sendStory);
  $("tell-now").addEventListener("click", () => lastStory && tell(lastStory));
  $("schedule").addEventListener("click", schedule);
  $("stories-refresh").addEventListener("click", listStories);
  for (const action of ["pause", "resume", "stop"]) {
    $(action).addEventListener("click", () => command(`playback.${action}`, {}, $("controls-status")));
  }
  $("volume").addEventListener("input", () => ($("volume-value").textContent = `${$("volume").value}%`));
  $("volume").addEventListener("change", setVolume);
  bindVoices(command, listVoices);
  bindSettings((fields) => command("settings.put", fields, $("settings-status"), () => i18n.t("settings.saved")));
  redraw();
  // The position moves on between the speaker's progress events.
  setInterval(() => [...devices.values()].some((d) => d.state?.state === "playing") && drawSpeakers(), 1000);
  if ("serviceWorker" in navigator) navigator.serviceWorker.register("./sw.js").catch(() => {});
  // A pairing link opened while the app is open (same page, new fragment) logs in as it says.
  window.addEventListener("hashchange", () => {
    const pairing = pairingFromLink();
    if (!pairing) return;
    if (link) logOut();
    fillLogin(pairing);
    logIn();
  });
  if (paired || (login.remember && login.password)) logIn();
}

start();
