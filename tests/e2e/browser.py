"""Headless Debian Chromium through Playwright, for the dashboard tests (fixtures in conftest)."""
from __future__ import annotations

import os
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# Set SCREENSHOTS_DIR=docs/screenshots to refresh the README's pictures from a test run.
SCREENSHOTS_DIR = os.environ.get("SCREENSHOTS_DIR")


def screenshot(page, name: str) -> None:
    if SCREENSHOTS_DIR:
        Path(SCREENSHOTS_DIR).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS_DIR) / f"{name}.png"), full_page=True)
