"""Where LMFast keeps what it produces: `LMFAST_HOME`, default `~/.lmfast`."""

from __future__ import annotations

import os
from pathlib import Path


def lmfast_home() -> Path:
    """The home folder, created on first use."""
    home = Path(os.environ.get("LMFAST_HOME") or Path.home() / ".lmfast").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home
