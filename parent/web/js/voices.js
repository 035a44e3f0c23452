// The parent's voice on the speaker: install a pack (file picker, progress, who/when/for which
// speaker), choose the active voice, go back to the version a new pack replaced, and a voice
// per story. Commands go through app.js's `command`; this module only draws and collects.

import { lang, t } from "./i18n.js";
import { $, showStatus } from "./ui.js";

const INSTALL_SECONDS = 180; // a Pi checks the signature and hashes and flushes to the SD card
let voices = []; // VoiceInfo from voice.list
let active = null;

/** "Mama — recorded by Ma on 1 Nov 2026 for kid-001": the consent, as the parent reads it. */
export function describe(voice) {
  return t("voice.describe", {
    name: voice.display_name,
    by: voice.recorded_by,
    when: new Date(voice.recorded_at).toLocaleDateString(lang() === "zh" ? "zh-CN" : "en", {
      year: "numeric",
      month: "short",
      day: "numeric",
    }),
    device: voice.device_id,
  });
}

function option(value, text) {
  const node = document.createElement("option");
  node.value = value;
  node.textContent = text;
  return node;
}

function draw() {
  const stock = t("voice.stock");
  $("voice-select").replaceChildren(option("", stock), ...voices.map((v) => option(v.voice_id, v.display_name)));
  $("voice-select").value = active ?? "";
  $("story-voice").replaceChildren(
    option("", t("story.voice.active")),
    ...voices.map((v) => option(v.voice_id, v.display_name)),
  );
  const current = voices.find((v) => v.voice_id === active);
  $("voice-current").textContent = current ? describe(current) : t("voice.none", { stock });
  $("voice-rollback").hidden = !current?.previous;
}

/** From a voice.list result. */
export function fillVoices(result) {
  voices = result.voices ?? [];
  active = result.active_voice ?? null;
  draw();
}

function base64(buffer) {
  const bytes = new Uint8Array(buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

/** command(name, fields, statusNode, describeOk, options) -> reply or null (app.js). */
export function bindVoices(command, refresh) {
  const status = $("voice-status");
  $("voice-select").addEventListener("change", async () => {
    const voice = $("voice-select").value || null;
    const reply = await command("voice.select", { voice }, status, () => t("voice.chosen"));
    refresh();
    return reply;
  });
  $("voice-rollback").addEventListener("click", async () => {
    const reply = await command("voice.rollback", {}, status, (r) => t("voice.rolled_back", { voice: describe(r) }));
    if (reply?.ok) refresh();
  });
  $("voice-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = $("voice-file").files[0];
    if (!file) return showStatus(status, t("voice.pick_file"), "bad");
    $("voice-install").disabled = true;
    try {
      const pack = base64(await file.arrayBuffer());
      const mb = (file.size / 1048576).toFixed(1);
      showStatus(status, t("voice.sending", { mb }), "wait");
      const started = Date.now();
      const onSent = () => {
        const tick = () => t("voice.checking", { seconds: Math.round((Date.now() - started) / 1000) });
        showStatus(status, tick(), "wait");
        const timer = setInterval(() => status.dataset.tone === "wait" && showStatus(status, tick(), "wait"), 1000);
        return () => clearInterval(timer);
      };
      const installed = (r) => t("voice.installed", { voice: describe(r) });
      const options = { timeoutSeconds: INSTALL_SECONDS, onSent };
      const reply = await command("voice.install", { pack }, status, installed, options);
      if (reply?.ok) {
        $("voice-form").reset();
        refresh();
      }
    } finally {
      $("voice-install").disabled = false;
    }
  });
}
