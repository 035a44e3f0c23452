// The app shell, cached so the app opens without a network (it still needs the broker to talk
// to the speaker). Network first, so a new version shows at once; the cache when offline.
// Bump VERSION when the shell's file list changes.

const VERSION = "hml-shell-v2";
const SHELL = [
  "./",
  "./index.html",
  "./app.css",
  "./manifest.webmanifest",
  "./icons/icon.svg",
  "./icons/maskable.svg",
  "./icons/speaker.svg",
  "./js/app.js",
  "./js/i18n.js",
  "./js/link.js",
  "./js/pairing.js",
  "./js/protocol.js",
  "./js/settings.js",
  "./js/ui.js",
  "./js/voices.js",
  "./node_modules/mqtt/dist/mqtt.esm.js",
];

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(VERSION)
      .then((cache) => cache.addAll(SHELL))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) => Promise.all(names.filter((name) => name !== VERSION).map((name) => caches.delete(name))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET" || new URL(request.url).origin !== self.location.origin) return;
  event.respondWith(
    fetch(request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(VERSION).then((cache) => cache.put(request, copy));
        }
        return response;
      })
      .catch(() => caches.match(request, { ignoreSearch: true })),
  );
});
