// Pairing without typing: the installer's QR code opens the app at #pair=<base64url JSON>
// ({v: 1, url, username, password}; parent/hearmylove_remote/pairing.py writes it). The fragment
// never reaches a server; the app takes it out of the address bar and history at once.

const PREFIX = "#pair=";

/** The pairing in this hash: null when there is none, {error} when it is damaged. */
export function readPairing(hash) {
  if (!hash.startsWith(PREFIX)) return null;
  try {
    const encoded = hash.slice(PREFIX.length).replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
    const data = JSON.parse(new TextDecoder().decode(bytes));
    const ok =
      data.v === 1 &&
      /^wss?:\/\//i.test(data.url ?? "") &&
      typeof data.username === "string" &&
      data.username &&
      typeof data.password === "string" &&
      data.password;
    return ok ? { url: data.url, username: data.username, password: data.password } : { error: "fields" };
  } catch (err) {
    return { error: err.message };
  }
}

/** Remove the credentials from the address bar and the browser's history entry. */
export function forgetHash() {
  history.replaceState(null, "", location.pathname + location.search);
}
