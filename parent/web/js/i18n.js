// Every word the app shows, in English and Chinese, and the one function that picks them.
// `t("key", {name: value})` fills `{name}`; elements with data-i18n / data-i18n-placeholder /
// data-i18n-label get their text, placeholder or aria-label from `applyTo`.

const STRINGS = {
  en: {
    "app.title": "Hear My Love",
    "app.tagline": "Stories in your voice, at home",
    "lang.switch": "中文",
    "lang.switch.label": "切换到中文",
    "login.heading": "Connect to your speaker",
    "login.url": "Broker address",
    "login.username": "Username",
    "login.password": "Password",
    "login.remember": "Remember my password on this phone",
    "login.submit": "Connect",
    "login.connecting": "Connecting…",
    "login.unreachable": "Can't reach the broker at {url}. Check the address and your connection. ({detail})",
    "login.refused": "The broker refused the login: wrong username or password. ({detail})",
    "login.missing": "Please fill in the address, username and password.",
    "login.bad_url": "The address must start with ws:// or wss://, e.g. {example}",
    "conn.online": "Connected",
    "conn.reconnecting": "Connection lost: reconnecting…",
    "conn.logout": "Log out",
    "speakers.heading": "Speakers",
    "speakers.none": "Waiting for your speaker to say hello…",
    "speakers.choose": "Choose {device}",
    "speaker.online": "online",
    "speaker.offline": "offline",
    "speaker.unknown": "not heard from yet",
    "state.idle": "Ready",
    "state.rendering": "Getting ready…",
    "state.playing": "Playing",
    "state.paused": "Paused",
    "state.sleeping": "Asleep (sleep timer)",
    "state.error": "Something went wrong",
    "speaker.story": "{title} · {position}",
    "speaker.volume": "Volume",
    "speaker.max_volume": "max {value}",
    "speaker.quiet": "quiet {start}–{end}",
    "control.pause": "Pause",
    "control.resume": "Resume",
    "control.stop": "Stop",
    "feed.heading": "What happened",
    "feed.empty": "News from the speaker shows up here.",
    "feed.started": "started: {title}",
    "feed.started_at": "started: {title} (from {position})",
    "feed.finished": "listened to the end: {title}",
    "feed.stopped": "stopped at {position}: {title}",
    "feed.stopped.sleep_timer": "sleep timer ended the story at {position}: {title}",
    "feed.stopped.next": "skipped to the next story at {position}: {title}",
    "feed.stopped.replaced": "another story took over at {position}: {title}",
    "feed.stopped.error": "stopped by an error at {position}: {title}",
    "feed.ready": "ready on the speaker: {title} ({duration})",
    "feed.heart": "❤ heart pressed",
    "feed.online": "speaker {device} is online",
    "feed.offline": "speaker {device} went offline",
    "feed.error": "error: {message}",
    "feed.refused": "{command} refused: {message}",
    "feed.scheduled": "scheduled for {when}: {title}",
    "story.heading": "Send a story",
    "story.title": "Title",
    "story.title.placeholder": "The sleepy owl",
    "story.lang": "Language",
    "story.lang.auto": "Detect",
    "story.lang.en": "English",
    "story.lang.zh": "中文",
    "story.text": "Story",
    "story.text.placeholder": "Once upon a time…",
    "story.send": "Send to the speaker",
    "story.sending": "Sending…",
    "story.sent": "Sent: {title}",
    "story.updated": "Updated: {title}",
    "story.tell_now": "Tell now",
    "story.schedule": "Schedule",
    "story.when": "When",
    "story.told": "Telling now: {title}",
    "story.scheduled": "Scheduled for {when}",
    "story.pick_time": "Pick a day and time first.",
    "story.missing": "A story needs a title and some text.",
    "stories.heading": "Stories on the speaker",
    "stories.refresh": "Refresh",
    "stories.none": "No stories yet.",
    "stories.ready": "ready",
    "stories.not_ready": "preparing",
    "stories.finished": "finished {count}×",
    "stories.tell": "Tell {title} now",
    "settings.heading": "Bedtime settings",
    "settings.max_volume": "Maximum volume",
    "settings.quiet": "Quiet hours (only the child can start a story)",
    "settings.quiet_start": "From",
    "settings.quiet_end": "Until",
    "settings.clear_quiet": "No quiet hours",
    "settings.sleep_timer": "Sleep timer (minutes, 0 = off)",
    "settings.save": "Save settings",
    "settings.saved": "Settings saved",
    "settings.quiet_pair": "Quiet hours need both a start and an end.",
    "reply.waiting": "Waiting for the speaker…",
    "reply.timeout": "The speaker did not answer {command} within {seconds} s. Is it online?",
    "reply.refused": "The speaker said no: {message}",
    "reply.ok": "Done",
    "no_speaker": "Choose a speaker first.",
  },
  zh: {
    "app.title": "听见爱",
    "app.tagline": "用你的声音，在家讲故事",
    "lang.switch": "English",
    "lang.switch.label": "Switch to English",
    "login.heading": "连接你的音箱",
    "login.url": "服务器地址",
    "login.username": "用户名",
    "login.password": "密码",
    "login.remember": "在这台手机上记住密码",
    "login.submit": "连接",
    "login.connecting": "正在连接…",
    "login.unreachable": "连不上服务器 {url}。请检查地址和网络。（{detail}）",
    "login.refused": "服务器拒绝登录：用户名或密码不对。（{detail}）",
    "login.missing": "请填写地址、用户名和密码。",
    "login.bad_url": "地址要以 ws:// 或 wss:// 开头，例如 {example}",
    "conn.online": "已连接",
    "conn.reconnecting": "连接断了，正在重连…",
    "conn.logout": "退出",
    "speakers.heading": "音箱",
    "speakers.none": "正在等音箱打招呼…",
    "speakers.choose": "选择 {device}",
    "speaker.online": "在线",
    "speaker.offline": "离线",
    "speaker.unknown": "还没有消息",
    "state.idle": "准备好了",
    "state.rendering": "正在准备…",
    "state.playing": "正在播放",
    "state.paused": "已暂停",
    "state.sleeping": "睡着了（定时关闭）",
    "state.error": "出了点问题",
    "speaker.story": "{title} · {position}",
    "speaker.volume": "音量",
    "speaker.max_volume": "最大 {value}",
    "speaker.quiet": "安静 {start}–{end}",
    "control.pause": "暂停",
    "control.resume": "继续",
    "control.stop": "停止",
    "feed.heading": "最新动态",
    "feed.empty": "音箱的消息会显示在这里。",
    "feed.started": "开始播放：{title}",
    "feed.started_at": "开始播放：{title}（从 {position}）",
    "feed.finished": "听完了：{title}",
    "feed.stopped": "停在 {position}：{title}",
    "feed.stopped.sleep_timer": "定时关闭，停在 {position}：{title}",
    "feed.stopped.next": "在 {position} 跳到下一个故事：{title}",
    "feed.stopped.replaced": "在 {position} 换成了别的故事：{title}",
    "feed.stopped.error": "出错停在 {position}：{title}",
    "feed.ready": "音箱已准备好：{title}（{duration}）",
    "feed.heart": "❤ 孩子按了爱心",
    "feed.online": "音箱 {device} 上线了",
    "feed.offline": "音箱 {device} 离线了",
    "feed.error": "错误：{message}",
    "feed.refused": "{command} 被拒绝：{message}",
    "feed.scheduled": "已预约 {when}：{title}",
    "story.heading": "发送故事",
    "story.title": "标题",
    "story.title.placeholder": "困倦的小猫头鹰",
    "story.lang": "语言",
    "story.lang.auto": "自动识别",
    "story.lang.en": "English",
    "story.lang.zh": "中文",
    "story.text": "故事",
    "story.text.placeholder": "从前……",
    "story.send": "发送到音箱",
    "story.sending": "正在发送…",
    "story.sent": "已发送：{title}",
    "story.updated": "已更新：{title}",
    "story.tell_now": "现在讲",
    "story.schedule": "预约",
    "story.when": "时间",
    "story.told": "正在讲：{title}",
    "story.scheduled": "已预约在 {when}",
    "story.pick_time": "请先选择日期和时间。",
    "story.missing": "故事需要标题和内容。",
    "stories.heading": "音箱里的故事",
    "stories.refresh": "刷新",
    "stories.none": "还没有故事。",
    "stories.ready": "已准备好",
    "stories.not_ready": "准备中",
    "stories.finished": "听完 {count} 次",
    "stories.tell": "现在讲 {title}",
    "settings.heading": "睡前设置",
    "settings.max_volume": "最大音量",
    "settings.quiet": "安静时段（只有孩子能开始故事）",
    "settings.quiet_start": "从",
    "settings.quiet_end": "到",
    "settings.clear_quiet": "不设安静时段",
    "settings.sleep_timer": "定时关闭（分钟，0 = 不关闭）",
    "settings.save": "保存设置",
    "settings.saved": "设置已保存",
    "settings.quiet_pair": "安静时段需要开始和结束时间。",
    "reply.waiting": "等待音箱回复…",
    "reply.timeout": "音箱在 {seconds} 秒内没有回复 {command}。它在线吗？",
    "reply.refused": "音箱拒绝了：{message}",
    "reply.ok": "完成",
    "no_speaker": "请先选择一个音箱。",
  },
};

export const LANGS = Object.keys(STRINGS);
const STORE_KEY = "hml.lang";
let current = pickDefault();

function pickDefault() {
  const stored = localStorage.getItem(STORE_KEY);
  if (stored && STRINGS[stored]) return stored;
  return (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
}

export function lang() {
  return current;
}

export function setLang(next) {
  if (!STRINGS[next]) return;
  current = next;
  localStorage.setItem(STORE_KEY, next);
}

export function t(key, params = {}) {
  const text = STRINGS[current][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}

export function applyTo(root) {
  document.documentElement.lang = current === "zh" ? "zh-CN" : "en";
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
}

/** 83.4 -> "1:23"; null -> "–". */
export function clock(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return "–";
  const whole = Math.max(0, Math.floor(seconds));
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

/** A Date in the reader's words: "Sat 19:30" / "周六 19:30". */
export function when(date) {
  return date.toLocaleString(current === "zh" ? "zh-CN" : "en", {
    weekday: "short",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  });
}
