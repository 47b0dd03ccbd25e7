"""Render an HTML page (the report, the slides) in headless Chromium and save a PNG screenshot.

Uses Debian's ``chromium`` and ``chromium-driver`` (``scripts/install_browser.sh``) through
selenium. ``max_kb`` keeps the PNG small enough to commit (docs/img/ files stay under 200 KB): the
image is reduced to a palette and, if still too large, scaled down until it fits.

    python -m nebras_bot.evaluation.screenshot results/report/report.html docs/img/report.png
"""
from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

CHROMIUM = os.environ.get("NEBRAS_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("NEBRAS_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars")
DEFAULT_WIDTH, DEFAULT_HEIGHT = 1100, 1500
DEFAULT_MAX_KB = 190
PALETTE_COLOURS = 96
MIN_SCALE = 0.3


class BrowserUnavailableError(RuntimeError):
    """Chromium or chromedriver is not installed."""


def browser_available() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


def start_browser(width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT):
    """A headless Chromium WebDriver (the caller quits it)."""
    if not browser_available():
        raise BrowserUnavailableError(
            f"headless Chromium not installed ({CHROMIUM}, {CHROMEDRIVER}); run scripts/install_browser.sh as root"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS + (f"--window-size={width},{height}",):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    return driver


def shrink_png(png: bytes, max_kb: int) -> bytes:
    """``png`` as a palette PNG, scaled down (keeping the aspect ratio) until it is at most ``max_kb``."""
    from PIL import Image

    original = Image.open(io.BytesIO(png)).convert("RGB")
    scale = 1.0
    while True:
        size = (max(1, int(original.width * scale)), max(1, int(original.height * scale)))
        image = original.resize(size, Image.LANCZOS) if scale < 1.0 else original
        buffer = io.BytesIO()
        image.quantize(colors=PALETTE_COLOURS).save(buffer, format="PNG", optimize=True)
        data = buffer.getvalue()
        if len(data) <= max_kb * 1024 or scale <= MIN_SCALE:
            return data
        scale *= 0.85


def screenshot(page: Path, out: Path, width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT,
               max_kb: Optional[int] = DEFAULT_MAX_KB) -> Path:
    """Open ``page`` in headless Chromium and save the visible window (``width`` × ``height``) to ``out``."""
    page = Path(page).resolve()
    if not page.is_file():
        raise FileNotFoundError(f"{page} not found (run `nebras report` first)")
    driver = start_browser(width, height)
    try:
        driver.get(page.as_uri())
        png = driver.get_screenshot_as_png()
    finally:
        driver.quit()
    data = shrink_png(png, max_kb) if max_kb else png
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Screenshot an HTML page in headless Chromium.")
    parser.add_argument("page", type=Path, help="HTML file, e.g. results/report/report.html")
    parser.add_argument("out", type=Path, help="PNG to write, e.g. docs/img/report.png")
    parser.add_argument("--width", type=int, default=DEFAULT_WIDTH)
    parser.add_argument("--height", type=int, default=DEFAULT_HEIGHT)
    parser.add_argument("--max-kb", type=int, default=DEFAULT_MAX_KB, help="shrink the PNG to at most this size (0: off)")
    args = parser.parse_args(argv)
    try:
        path = screenshot(args.page, args.out, args.width, args.height, args.max_kb or None)
    except (BrowserUnavailableError, FileNotFoundError) as error:
        print(f"screenshot: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
