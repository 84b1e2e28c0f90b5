"""Headless Chromium (Debian's `chromium` package) driven by Playwright for the UI checks: no
browser is downloaded; the machine's own is launched with the flags a closed network needs."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, sync_playwright

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    found = os.environ.get("BIOLOUPE_CHROMIUM") or shutil.which("chromium")
    if not found:
        raise RuntimeError(
            "no Chromium: install Debian's package (apt-get install chromium) or set "
            "BIOLOUPE_CHROMIUM to a Chromium executable (make e2e installs it when it can)"
        )
    return found


@contextmanager
def chromium_page(width: int = 1440, height: int = 900) -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def dismiss_welcome(page: Page, wait_ms: int = 4000) -> None:
    """Close the webserver's "Join the Dagster community" dialog, which a new browser profile
    gets a moment after its first page loads; later dialogs close themselves the same way."""
    skip = page.get_by_role("button", name="Skip")
    page.add_locator_handler(skip, lambda locator: locator.click())
    with suppress(PlaywrightError):  # not shown this time
        skip.click(timeout=wait_ms)
