"""The web chat page of ``nebras serve`` (``/``) in headless Chromium (Debian's chromium +
chromium-driver, driven by selenium): type a message, get the bot's reply with its
generated/template badge, click feedback and find it stored, take a screenshot.

Skipped with the reason when the browser is not installed (``scripts/install_browser.sh``).
Set ``NEBRAS_SCREENSHOT_DIR`` to keep the screenshot somewhere else than the test's tmp dir.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterator

import pytest

from .conftest import TOKEN, free_port, wait_http
from .fake_chat_apis import ServerThread

CHROMIUM = os.environ.get("NEBRAS_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("NEBRAS_CHROMEDRIVER", "/usr/bin/chromedriver")
GREETING = "Hello! I am the Nebras test bot. How can I help?"
WAIT_S = 30

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
        reason=f"headless Chromium not installed ({CHROMIUM}, {CHROMEDRIVER}); run scripts/install_browser.sh as root",
    ),
]


class WebServer:
    def __init__(self, url: str, app) -> None:
        self.url = url
        self.app = app


@pytest.fixture(scope="module")
def web_server(serving_bot_model: Path, tmp_path_factory) -> Iterator[WebServer]:
    """``nebras serve``'s app on a real port (the browser needs one), auth on, feedback in a temp DB."""
    from nebras_bot.serving.app import create_app
    from nebras_bot.serving.settings import ServingSettings
    from nebras_bot.support import db
    from nebras_bot.support.feedback import FeedbackStore
    from nebras_bot.support.settings import SupportSettings

    database = tmp_path_factory.mktemp("web_chat") / "support.db"
    support = SupportSettings(db_url=f"sqlite:///{database}")
    app = create_app(ServingSettings(model=serving_bot_model, endpoints=None, api_token=TOKEN,
                                     rate_limit_per_minute=0))
    app.state.feedback_store = FeedbackStore(db.connect(settings=support), support)
    port = free_port()
    with ServerThread(app, port, start_timeout=240):  # model loading shares the loop
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/readyz", timeout=180)
        yield WebServer(url, app)


@pytest.fixture(scope="module")
def browser() -> Iterator["object"]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=760,640", "--lang=en-US"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


def _wait(driver, condition, timeout: float = WAIT_S):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _open_page_with_token(browser, web_server) -> None:
    from selenium.webdriver.common.by import By

    browser.get(web_server.url + "/")
    assert browser.title == "Nebras support chat"
    browser.find_element(By.CSS_SELECTOR, ".chat__settings summary").click()
    token = browser.find_element(By.ID, "token")
    token.send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, ".chat__settings summary").click()  # fold it again


def _say(browser, text: str, replies_before: int) -> list:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = browser.find_element(By.ID, "message")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".msg--bot")) > replies_before)
    return browser.find_elements(By.CSS_SELECTOR, ".msg--bot")


def test_type_get_a_reply_give_feedback_and_screenshot(browser, web_server, tmp_path):
    from selenium.webdriver.common.by import By

    _open_page_with_token(browser, web_server)
    replies = _say(browser, "hello there", 0)
    reply = replies[-1]
    assert reply.find_element(By.CSS_SELECTOR, ".msg__bubble").text == GREETING
    badge = reply.find_element(By.CSS_SELECTOR, ".badge")
    assert badge.text == "template" and "badge--template" in badge.get_attribute("class")
    assert reply.get_attribute("data-generated") == "false"
    user_bubbles = browser.find_elements(By.CSS_SELECTOR, ".msg--user .msg__bubble")
    assert [b.text for b in user_bubbles] == ["hello there"]

    # buttons of a reply are clickable and send their payload
    replies = _say(browser, "show me the options", len(replies))
    buttons = replies[-1].find_elements(By.CSS_SELECTOR, ".msg__buttons button")
    assert [b.text for b in buttons] == ["Track an order", "Say bye"]

    # thumbs up on the greeting -> stored with the reply's text and its generated flag
    first = browser.find_elements(By.CSS_SELECTOR, ".msg--bot")[0]
    up = first.find_element(By.CSS_SELECTOR, "button.feedback--up")
    assert up.text == "Helpful"
    up.click()
    meta = first.find_element(By.CSS_SELECTOR, ".msg__meta")
    _wait(browser, lambda d: meta.get_attribute("data-feedback") == "up")
    assert "Thanks" in browser.find_element(By.ID, "status").text
    assert all(not b.is_enabled() for b in first.find_elements(By.CSS_SELECTOR, "button.feedback"))
    stored = web_server.app.state.feedback_store.since(0)
    assert len(stored) == 1
    assert stored[0].rating == "up" and stored[0].bot_text == GREETING and stored[0].generated is False
    assert str(stored[0].id) == meta.get_attribute("data-feedback-id")
    assert stored[0].sender_id and stored[0].sender_id.startswith("web-")

    out = Path(os.environ.get("NEBRAS_SCREENSHOT_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    shot = out / "web-chat.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 5_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_generated_reply_gets_the_generated_badge(browser, web_server):
    """The badge follows the API's per-message ``generated`` flag (the fixture bot only templates,
    so this reply comes from a stubbed fetch inside the page)."""
    from selenium.webdriver.common.by import By

    _open_page_with_token(browser, web_server)
    browser.execute_script("""
        const realFetch = window.fetch;
        window.fetch = function (url, options) {
          if (String(url).endsWith('v1/chat')) {
            const body = {sender_id: 'x', intent: 'track_order', confidence: 0.9, generated: true,
                          model_version: 'nlg-test-1',
                          messages: [{text: 'Your order {order_id} is on its way.', generated: true}]};
            return Promise.resolve(new Response(JSON.stringify(body), {status: 200}));
          }
          return realFetch(url, options);
        };""")
    reply = _say(browser, "where is my order", 0)[-1]
    badge = reply.find_element(By.CSS_SELECTOR, ".badge")
    assert badge.text == "generated" and "badge--generated" in badge.get_attribute("class")
    assert "nlg-test-1" in badge.get_attribute("title")


def test_wrong_token_shows_the_error_and_no_reply(browser, web_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(web_server.url + "/")
    browser.execute_script("sessionStorage.clear()")
    browser.get(web_server.url + "/")
    box = browser.find_element(By.ID, "message")
    box.send_keys("hello", Keys.ENTER)
    status = browser.find_element(By.ID, "status")
    _wait(browser, lambda d: "Error 401" in status.text)
    assert "chat__status--error" in status.get_attribute("class")
    time.sleep(0.2)
    assert browser.find_elements(By.CSS_SELECTOR, ".msg--bot") == []
