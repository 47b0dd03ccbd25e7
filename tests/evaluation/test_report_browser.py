"""The report and the slide deck rendered in headless Chromium (Debian's chromium + chromium-driver).

Run ``scripts/install_browser.sh`` (as root) to install them; without them these tests are skipped
with that reason. A screenshot of each page is saved in the test's tmp directory.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from nebras_bot.evaluation.report import SECTIONS, gather, write_report

from .report_fixtures import build_home

CHROMIUM = os.environ.get("NEBRAS_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("NEBRAS_CHROMEDRIVER", "/usr/bin/chromedriver")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
        reason=f"headless Chromium not installed ({CHROMIUM}, {CHROMEDRIVER}); run scripts/install_browser.sh as root",
    ),
]


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def pages(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("NEBRAS_HOME", str(home))
    build_home(home)
    report, slides = write_report(tmp_path / "report", gather(), slides=True)
    return report, slides


def test_report_sections_render_in_chromium(browser, pages, tmp_path):
    from selenium.webdriver.common.by import By

    report, _ = pages
    browser.get(report.as_uri())
    assert browser.title == "Nebras evaluation report"
    for key, title in SECTIONS:
        section = browser.find_element(By.ID, key)
        assert section.find_element(By.TAG_NAME, "h2").text == title
        assert section.is_displayed()
    assert not browser.find_elements(By.CSS_SELECTOR, ".missing")
    images = browser.find_elements(By.TAG_NAME, "img")
    assert len(images) >= 8
    # Every embedded PNG decoded and laid out (naturalWidth is 0 for a broken image).
    widths = browser.execute_script("return [...document.images].map(i => i.complete ? i.naturalWidth : 0)")
    assert all(w > 0 for w in widths), widths
    cells = [c.text for c in browser.find_element(By.ID, "summary").find_elements(By.TAG_NAME, "td")]
    assert "BLEU" in cells and "ROUGE-L" in cells
    screenshot = tmp_path / "report.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
    keep = os.environ.get("NEBRAS_SCREENSHOT_DIR")
    if keep:  # the README's screenshot step sets this to keep a copy
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(keep) / "report.png")


def test_slides_render_and_navigate_with_the_keyboard(browser, pages, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _, slides = pages
    browser.set_window_size(1280, 800)
    browser.get(slides.as_uri())
    deck = browser.find_elements(By.CSS_SELECTOR, "section.slide")
    assert len(deck) >= 5
    counter = browser.find_element(By.CSS_SELECTOR, ".counter")
    assert counter.text == f"1 / {len(deck)}"
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_DOWN)
    browser.implicitly_wait(0)
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 5).until(lambda d: counter.text == f"2 / {len(deck)}")
    assert "BLEU" in browser.find_element(By.ID, "slide-headline").text
    assert browser.save_screenshot(str(tmp_path / "slides.png"))
