// The bedtime settings form: max volume, quiet hours, sleep timer -> `settings.put`.
// Filled from the speaker's retained state, unless the parent is in the middle of editing.

import { t } from "./i18n.js";
import { $, showStatus } from "./ui.js";

let dirty = false;

const hhmm = (value) => (value ? String(value).slice(0, 5) : "");

function showMaxVolume() {
  $("max-volume-value").textContent = `${$("max-volume").value}%`;
}

/** From a `state` payload (max_volume, quiet_hours) or a `settings.put` result. */
export function fillSettings(values, { force = false } = {}) {
  if (dirty && !force) return;
  dirty = false;
  if (values.max_volume != null) $("max-volume").value = Math.round(values.max_volume * 100);
  if ("quiet_hours" in values) {
    $("quiet-start").value = hhmm(values.quiet_hours?.start);
    $("quiet-end").value = hhmm(values.quiet_hours?.end);
    $("quiet-clear").checked = !values.quiet_hours;
  }
  if (values.sleep_timer_minutes != null) $("sleep-timer").value = values.sleep_timer_minutes;
  showMaxVolume();
}

function collect() {
  const settings = { max_volume: Number($("max-volume").value) / 100 };
  const start = $("quiet-start").value;
  const end = $("quiet-end").value;
  const clear = $("quiet-clear").checked;
  if (!clear && Boolean(start) !== Boolean(end)) return null;
  if (!clear && start) settings.quiet_hours = { start, end };
  const sleep = $("sleep-timer").value;
  if (sleep !== "") settings.sleep_timer_minutes = Number(sleep);
  return { settings, clear_quiet_hours: clear };
}

/** save(fields) sends the command and resolves with the reply (or null). */
export function bindSettings(save) {
  const form = $("settings-form");
  form.addEventListener("input", () => {
    dirty = true;
    showMaxVolume();
  });
  for (const id of ["quiet-start", "quiet-end"]) {
    $(id).addEventListener("input", () => ($("quiet-clear").checked = false));
  }
  $("quiet-clear").addEventListener("change", () => {
    if ($("quiet-clear").checked) $("quiet-start").value = $("quiet-end").value = "";
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const fields = collect();
    if (!fields) return showStatus($("settings-status"), t("settings.quiet_pair"), "bad");
    const reply = await save(fields);
    if (reply?.ok) fillSettings(reply.result.settings ?? {}, { force: true });
  });
}
