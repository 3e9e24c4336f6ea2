"""Real headless Chromium (Debian's package) driving a real server over loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import IN_CI

CHROMIUM = Path(os.environ.get("METERHUB_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Chromium for this package's tests only: Playwright's synchronous API keeps an event
    loop running in this thread while it is open, which ``asyncio.run`` elsewhere refuses."""
    if not CHROMIUM.exists():
        reason = f"Chromium not found at {CHROMIUM} (`make browser` installs Debian's chromium)"
        if IN_CI:
            pytest.fail(f"{reason}; CI=true requires it")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield chromium
        chromium.close()


def screenshot(page: Page, name: str) -> Path:
    """Save the whole page under ``test-artifacts/screenshots/<name>.png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
