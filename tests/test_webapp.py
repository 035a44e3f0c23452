"""The parent's phone app (parent/web/) in a real browser, end to end.

Debian's Chromium, driven by Playwright at a phone's size, loads the app from a local HTTP
server, logs in to a real Mosquitto over WebSockets and talks protocol v1 to a real
in-process daemon (real engine, WAV file for a speaker, gpiozero mock pins):
page -> broker -> daemon -> events back on the page. The browser only ever talks to 127.0.0.1.

Needs: `apt-get install -y chromium mosquitto`, `pip install playwright` (never
`playwright install`: the system Chromium is used), `npm ci --prefix parent/web`.
Set HML_UPDATE_SCREENSHOTS=1 to refresh docs/screenshots/parent-app.png and parent-voice.png.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from hearmylove.audio import WavFileOutput
from hearmylove.broker import Account, LocalBroker, free_port
from hearmylove.config import DaemonConfig
from hearmylove.daemon import Daemon
from hearmylove.engine.engine import Engine
from hearmylove_remote import pairing
from voicelab.pack import generate_key, load_signing_key, public_key_base64

from .test_voice_install import make_pack

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the browser fixture fails every test here, naming the install command
    expect = sync_playwright = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "parent" / "web"
SCREENSHOT = ROOT / "docs" / "screenshots" / "parent-app.png"
VOICE_SCREENSHOT = ROOT / "docs" / "screenshots" / "parent-voice.png"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
    # Belt and braces: no name resolves, so nothing but the literal 127.0.0.1 can be reached.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
DEVICE, PARENT, PASSWORD = "kid-007", "mum", "p-secret"
MAX_STORY_CHARS = 200


# -- tools ----------------------------------------------------------------------------


def _check_tools() -> None:
    """Fail (never skip) naming the install command for whatever is missing."""
    if sync_playwright is None:
        pytest.fail("the Python package playwright is missing; install it with: pip install playwright")
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing; install it with: apt-get install -y chromium")
    if not (WEB / "node_modules" / "mqtt" / "dist" / "mqtt.esm.js").exists():
        pytest.fail("the web app's MQTT.js is missing; install it with: npm ci --prefix parent/web")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    _check_tools()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


class _StaticFiles(SimpleHTTPRequestHandler):
    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".webmanifest": "application/manifest+json",
        ".svg": "image/svg+xml",
    }

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="module")
def web_url() -> Iterator[str]:
    """parent/web/ as static files, the way production serves it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_StaticFiles, directory=str(WEB)))
    thread = threading.Thread(target=server.serve_forever, name="web", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    accounts = [Account(DEVICE, "d-secret"), Account(PARENT, PASSWORD, devices=(DEVICE,))]
    with LocalBroker(tmp_path / "broker", accounts, websocket_port=free_port()) as broker:
        yield broker


@pytest.fixture
def studio_key(tmp_path: Path) -> Path:
    """The studio's signing key; the speaker trusts its public half."""
    key = tmp_path / "studio.key"
    generate_key(key)
    return key


@pytest.fixture
def speaker(tmp_path: Path, engine: Engine, broker: LocalBroker, studio_key: Path) -> Iterator[Daemon]:
    """The real daemon in a thread, its speaker a WAV file, its buttons mock pins."""
    factory = MockFactory(pin_class=MockPWMPin)
    config = DaemonConfig(
        device_id=DEVICE,
        state_dir=tmp_path / "state",
        mqtt={"host": "127.0.0.1", "port": broker.port, "tls": False, "username": DEVICE, "password": "d-secret"},
        story={"max_story_chars": MAX_STORY_CHARS, "progress_interval": 1.0},
        trusted_keys=[public_key_base64(load_signing_key(studio_key))],
    )
    daemon = Daemon(config, engine=engine, output=WavFileOutput(tmp_path / "out.wav"), pin_factory=factory)
    stop = threading.Event()
    thread = threading.Thread(target=daemon.run, args=(stop,), name="daemon", daemon=True)
    thread.start()
    try:
        assert daemon.link.connected.wait(30), "the daemon did not reach the broker within 30 s"
        yield daemon
    finally:
        stop.set()
        thread.join(timeout=30)
        factory.reset()


@pytest.fixture
def page(browser: Browser, web_url: str) -> Iterator[Page]:
    """A phone-sized page; afterwards, no page error and no address but 127.0.0.1."""
    context = browser.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        locale="en-US",
    )
    context.set_default_timeout(30_000)
    expect.set_options(timeout=30_000)
    addresses: list[str] = []
    problems: list[str] = []
    context.on("request", lambda request: addresses.append(request.url))
    page = context.new_page()
    page.on("websocket", lambda ws: addresses.append(ws.url))
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
    page.goto(web_url)
    yield page
    context.close()
    outside = [
        a for a in addresses if not a.startswith(("http://127.0.0.1:", "ws://127.0.0.1:", "blob:http://127.0.0.1:"))
    ]
    assert not outside, f"the page reached beyond 127.0.0.1: {outside}"
    # Chromium logs a failed WebSocket handshake as a console error; the tests cause those on purpose.
    assert not [p for p in problems if "WebSocket connection to" not in p], problems


def listening(port: int) -> None:
    """LocalBroker waits for its plain MQTT port; its WebSockets listener may open a moment later."""
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {port}"
            time.sleep(0.05)


def log_in(page: Page, url: str, username: str = PARENT, password: str = PASSWORD) -> None:
    page.get_by_label("Broker address").fill(url)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Connect").click()


def assert_installable(page: Page) -> None:
    """A PWA as Chromium judges it: the service worker runs, the manifest and icons pass."""
    worker = """Promise.race([
        navigator.serviceWorker.ready.then((registration) => Boolean(registration.active)),
        new Promise((resolve) => setTimeout(resolve, 10000, false)),
    ])"""
    assert page.evaluate(worker), "the service worker (offline app shell) did not start within 10 s"
    cdp = page.context.new_cdp_session(page)
    assert cdp.send("Page.getAppManifest")["errors"] == []
    problems = {e["errorId"] for e in cdp.send("Page.getInstallabilityErrors")["installabilityErrors"]}
    assert problems <= {"in-incognito"}, problems  # every Playwright context is an incognito one


def shoot(page: Page, folder: Path) -> Callable[[str], Path]:
    def take(name: str) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=path)
        return path

    return take


# -- scenarios ------------------------------------------------------------------------


def test_parent_sends_a_story_tells_it_and_hears_it_was_finished(
    page: Page, broker: LocalBroker, speaker: Daemon, tmp_path: Path
) -> None:
    screenshot = shoot(page, tmp_path)
    assert_installable(page)
    screenshot("1-login")
    log_in(page, f"ws://127.0.0.1:{broker.websocket_port}")

    card = page.locator("li.speaker", has_text=DEVICE)
    expect(card.locator(".badge")).to_have_text("online")
    expect(card.locator(".speaker-state")).to_have_text("Ready")
    screenshot("2-speaker-online")

    page.locator("#volume").fill("50")
    expect(card.locator(".speaker-volume")).to_contain_text("Volume 50%")

    page.get_by_label("Title").fill("The sleepy owl")
    page.get_by_label("Language").select_option("en")
    page.get_by_label("Story", exact=True).fill("The moon smiled at the sleepy owl.")
    page.get_by_role("button", name="Send to the speaker").click()
    expect(page.locator("#story-status")).to_have_text("Sent: The sleepy owl")
    screenshot("3-story-sent")

    page.locator("#tell-now").click()
    feed = page.locator("#feed")
    expect(feed.get_by_text("started: The sleepy owl")).to_be_visible(timeout=60_000)
    expect(feed.get_by_text("listened to the end: The sleepy owl")).to_be_visible(timeout=120_000)
    story = page.locator("#stories li.story", has_text="The sleepy owl")
    expect(story).to_contain_text("finished 1×")
    expect(card.locator(".speaker-state")).to_have_text("Ready")

    page.get_by_label("When").fill((datetime.now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Schedule").click()  # `at` with this browser's UTC offset
    expect(page.locator("#story-status")).to_contain_text("Scheduled for")

    page.evaluate("window.scrollTo(0, 0)")
    final = screenshot("4-finished")
    if os.environ.get("HML_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(final, SCREENSHOT)


def test_wrong_password_and_missing_broker_get_different_messages(
    page: Page, broker: LocalBroker, tmp_path: Path
) -> None:
    status = page.locator("#login-status")
    log_in(page, f"ws://127.0.0.1:{broker.websocket_port}", password="not-the-password")
    expect(status).to_contain_text("The broker refused the login: wrong username or password")
    page.screenshot(path=tmp_path / "refused.png")
    page.get_by_role("button", name="切换到中文").click()  # the same page in Chinese
    expect(page.get_by_role("heading", name="连接你的音箱")).to_be_visible()
    expect(page.get_by_role("button", name="连接")).to_be_visible()
    page.get_by_role("button", name="Switch to English").click()

    log_in(page, f"ws://127.0.0.1:{free_port()}")
    expect(status).to_contain_text("Can't reach the broker at ws://127.0.0.1:")
    expect(page.locator("#app-view")).to_be_hidden()

    log_in(page, f"ws://127.0.0.1:{broker.websocket_port}")
    expect(page.locator("#conn-text")).to_have_text("Connected")

    broker.stop()  # once logged in, the app rides out a broker restart
    expect(page.locator("#conn-text")).to_have_text("Connection lost: reconnecting…")
    broker.start()
    expect(page.locator("#conn-text")).to_have_text("Connected")

    page.get_by_role("button", name="Log out").click()
    page.reload()  # the address and username are remembered; the password was not asked to be
    expect(page.get_by_label("Username")).to_have_value(PARENT)
    expect(page.get_by_label("Broker address")).to_have_value(f"ws://127.0.0.1:{broker.websocket_port}")
    expect(page.get_by_label("Password", exact=True)).to_have_value("")


def test_the_device_refusing_a_command_shows_its_own_words(
    page: Page, broker: LocalBroker, speaker: Daemon, tmp_path: Path
) -> None:
    log_in(page, f"ws://127.0.0.1:{broker.websocket_port}")
    expect(page.locator("li.speaker", has_text=DEVICE).locator(".badge")).to_have_text("online")
    feed = page.locator("#feed")

    expect(page.locator("#playback")).to_be_hidden()  # idle: nothing to pause, resume or stop

    page.get_by_label("Title").fill("Too long")
    page.get_by_label("Story", exact=True).fill("The owl hooted. " * 20)
    page.get_by_role("button", name="Send to the speaker").click()
    limit = f"story text is 319 characters; the limit is {MAX_STORY_CHARS}"
    expect(page.locator("#story-status")).to_have_text(f"The speaker said no: {limit}")
    expect(feed.get_by_text(f"story.put refused: {limit}")).to_be_visible()

    # Quiet hours set from the phone refuse the parent's "tell now", in the device's words.
    now = datetime.now()
    page.locator("#settings-card summary").click()
    page.get_by_label("From").fill((now - timedelta(hours=1)).strftime("%H:%M"))
    page.get_by_label("Until").fill((now + timedelta(hours=1)).strftime("%H:%M"))
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#settings-status")).to_have_text("Settings saved")
    expect(page.locator("li.speaker .speaker-volume")).to_contain_text("quiet ")
    page.get_by_label("Title").fill("Shh")
    page.get_by_label("Story", exact=True).fill("Time to sleep, little one.")
    page.get_by_role("button", name="Send to the speaker").click()
    expect(page.locator("#story-status")).to_have_text("Sent: Shh")
    page.locator("#tell-now").click()
    expect(page.locator("#story-status")).to_contain_text("it is quiet hours at the speaker")
    page.get_by_role("button", name="Tell Shh now").click()  # the same, from the story list
    expect(page.locator("#stories-status")).to_contain_text("it is quiet hours at the speaker")
    page.screenshot(path=tmp_path / "refused-command.png", full_page=True)

    page.get_by_label("No quiet hours").check()
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#settings-status")).to_have_text("Settings saved")
    expect(page.get_by_label("From")).to_have_value("")
    expect(page.locator("li.speaker .speaker-volume")).not_to_contain_text("quiet ")


def test_a_pairing_link_logs_the_phone_in_and_leaves_no_password_in_the_address(
    page: Page, broker: LocalBroker, web_url: str
) -> None:
    assert broker.websocket_port is not None
    listening(broker.websocket_port)  # the link logs in the moment it opens
    paired = pairing.Pairing(url=f"ws://127.0.0.1:{broker.websocket_port}", username=PARENT, password=PASSWORD)
    page.goto(pairing.link(web_url, paired))
    expect(page.locator("#conn-text")).to_have_text("Connected")
    expect(page.locator("#app-view")).to_be_visible()
    assert "#pair" not in page.url and page.evaluate("location.hash") == ""
    page.reload()  # remembered: the app opens logged in, as an installed app would
    expect(page.locator("#conn-text")).to_have_text("Connected")
    page.get_by_role("button", name="Log out").click()
    page.goto(web_url + "#pair=not-base64-json")
    expect(page.locator("#login-status")).to_contain_text("This pairing link is damaged")
    assert page.evaluate("location.hash") == ""


def test_the_parent_installs_chooses_and_rolls_back_a_voice_from_the_app(
    page: Page, broker: LocalBroker, speaker: Daemon, tmp_path: Path, studio_key: Path, model_dir: Path, engine: Engine
) -> None:
    first, second = tmp_path / "mama-1.tar", tmp_path / "mama-2.tar"
    first.write_bytes(make_pack(tmp_path, studio_key, model_dir, engine, device=DEVICE, row=60))
    second.write_bytes(make_pack(tmp_path, studio_key, model_dir, engine, device=DEVICE, row=90))
    foreign = tmp_path / "theirs.tar"
    foreign.write_bytes(make_pack(tmp_path, studio_key, model_dir, engine, device="kid-999"))
    log_in(page, f"ws://127.0.0.1:{broker.websocket_port}")
    expect(page.locator("li.speaker", has_text=DEVICE).locator(".badge")).to_have_text("online")
    status, current = page.locator("#voice-status"), page.locator("#voice-current")
    expect(current).to_contain_text("The speaker's own voice")

    page.get_by_label("Install a voice pack").set_input_files(first)
    page.get_by_role("button", name="Install the voice").click()
    expect(status).to_contain_text(f"Installed: Mama: recorded by Ma on Nov 1, 2026 for {DEVICE}", timeout=120_000)
    expect(current).to_have_text(f"Mama: recorded by Ma on Nov 1, 2026 for {DEVICE}")
    expect(page.get_by_label("Tell stories in")).to_have_value("mama")
    expect(page.locator("#voice-rollback")).to_be_hidden()

    page.get_by_label("Install a voice pack").set_input_files(foreign)
    page.get_by_role("button", name="Install the voice").click()
    expect(status).to_contain_text("'kid-999'", timeout=120_000)
    expect(status).to_contain_text(f"'{DEVICE}'")

    page.get_by_label("Install a voice pack").set_input_files(second)
    page.get_by_role("button", name="Install the voice").click()
    expect(status).to_contain_text("Installed: Mama", timeout=120_000)
    page.get_by_role("button", name="Go back to the previous version").click()
    expect(status).to_contain_text("Back to the previous version: Mama")
    expect(page.locator("#voice-rollback")).to_be_hidden()

    page.get_by_label("Tell stories in").select_option("")
    expect(status).to_have_text("Voice chosen")
    expect(current).to_contain_text("The speaker's own voice")
    assert speaker.library.settings()["voice"] is None
    page.get_by_label("Title").fill("Owl")
    page.get_by_label("Voice", exact=True).select_option("mama")
    page.get_by_label("Story", exact=True).fill("The owl said good night.")
    page.get_by_role("button", name="Send to the speaker").click()
    expect(page.locator("#story-status")).to_have_text("Sent: Owl")
    stored = [s for s in speaker.library.stories() if s.title == "Owl"]
    assert [s.voice for s in stored] == ["mama"]
    page.get_by_label("Tell stories in").select_option("mama")
    expect(current).to_contain_text("Mama: recorded by Ma")
    card = page.locator("section", has=page.locator("#voice-heading"))
    card.screenshot(path=tmp_path / "voice.png")
    if os.environ.get("HML_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(tmp_path / "voice.png", VOICE_SCREENSHOT)
