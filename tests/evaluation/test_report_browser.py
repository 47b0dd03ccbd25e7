"""The report and the slide deck rendered in headless Chromium (Debian's chromium + chromium-driver).

Run ``scripts/install_browser.sh`` (as root) to install them; without them these tests are skipped
with that reason. A screenshot of each page is saved in the test's tmp directory.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from nebras_bot.evaluation import screenshot as shot
from nebras_bot.evaluation.report import SECTIONS, gather, write_report

from .report_fixtures import build_home

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not shot.browser_available(),
        reason=f"headless Chromium not installed ({shot.CHROMIUM}, {shot.CHROMEDRIVER}); "
        "run scripts/install_browser.sh as root",
    ),
]


@pytest.fixture
def browser():
    driver = shot.start_browser(1280, 1600)
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


def test_screenshot_command_writes_a_small_png(pages, tmp_path):
    from PIL import Image

    report, _ = pages
    out = tmp_path / "img" / "report.png"
    assert shot.main([str(report), str(out), "--max-kb", "150"]) == 0
    assert 10_000 < out.stat().st_size <= 150 * 1024
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width >= 0.3 * shot.DEFAULT_WIDTH
    assert shot.main([str(tmp_path / "nope.html"), str(out)]) == 2


def test_report_cli_takes_the_screenshot(pages, tmp_path, capsys):
    from nebras_bot.cli import main

    out = tmp_path / "shot.png"
    assert main(["report", "--out", str(tmp_path / "r2"), "--screenshot", str(out)]) == 0
    assert 0 < out.stat().st_size <= shot.DEFAULT_MAX_KB * 1024
    assert f"wrote {out}" in capsys.readouterr().out
