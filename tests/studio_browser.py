"""Studio in a real browser: Debian's Chromium, headless, driven by Playwright for Python.
`make install` installs Chromium; elsewhere set LMFAST_CHROMIUM to a Chromium executable."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def chromium() -> str:
    found = os.environ.get("LMFAST_CHROMIUM") or shutil.which("chromium")
    found = found or shutil.which("chromium-browser")
    if not found:
        pytest.skip("needs Chromium (Debian: apt-get install chromium; `make install` does)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_studio(settings: object) -> Iterator[str]:
    """Studio on a real socket in this process, until the block ends."""
    import uvicorn

    from lmfast.studio import create_studio_app

    app = create_studio_app(settings)  # type: ignore[arg-type]
    server = uvicorn.Server(
        uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning")  # type: ignore[attr-defined]
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise TimeoutError("studio did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{settings.port}"  # type: ignore[attr-defined]
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def screenshots_folder(tmp: Path) -> Path:
    """LMFAST_SCREENSHOTS (docs/images/studio refreshes the README's pictures), else tmp."""
    folder = Path(os.environ.get("LMFAST_SCREENSHOTS") or tmp / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
