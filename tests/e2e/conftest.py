"""Browser tests: the real app served by uvicorn on a loopback port, driven by Debian's chromium.

The server runs in its own thread and event loop and opens its own engine through the app's
lifespan; the tests talk to it over HTTP only. Playwright's async API shares the session loop
with the database fixtures.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from playwright.async_api import Browser, Dialog, Page, async_playwright

from leadrelay.app import create_app
from leadrelay.core.settings import Settings
from tests.conftest import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
CHROMIUM_INSTALLED = Path(CHROMIUM).exists()
SERVER_START_SECONDS = 30

Screenshot = Callable[[Page, str], Awaitable[Path]]
_screenshot_dirs: list[Path] = []


@pytest.fixture(scope="session")
def live_server(settings: Settings) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="console-live-server", daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_SECONDS
    while True:
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the live server on {base_url} did not answer /health")
        time.sleep(0.05)
    yield base_url
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM_INSTALLED:
        pytest.skip("Debian's chromium is not installed (make browser)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser, live_server: str) -> AsyncIterator[Page]:
    context = await browser.new_context(
        base_url=live_server, viewport={"width": 1360, "height": 860}
    )
    context.set_default_timeout(10_000)
    opened = await context.new_page()

    async def accept(dialog: Dialog) -> None:  # hx-confirm: the person clicks OK
        await dialog.accept()

    opened.on("dialog", accept)
    try:
        yield opened
    finally:
        await context.close()


@pytest.fixture(scope="session")
def screenshot(tmp_path_factory: pytest.TempPathFactory) -> Screenshot:
    folder = tmp_path_factory.getbasetemp() / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    _screenshot_dirs.append(folder)

    async def shoot(page: Page, name: str) -> Path:
        path = folder / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path

    return shoot


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for folder in _screenshot_dirs[:1]:
        terminalreporter.write_line(f"console screenshots: {folder}")
