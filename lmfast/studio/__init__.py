"""LMFast Studio: the whole lifecycle in a browser, over the same functions and job store as
the CLI and MCP. Server-rendered pages (FastAPI + Jinja2) with one small script; one module
per page under `pages/`."""

from lmfast.studio.access import StudioSettings
from lmfast.studio.app import create_studio_app, run_studio

__all__ = ["StudioSettings", "create_studio_app", "run_studio"]
