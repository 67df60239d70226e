"""The user's own Python objects named by reference: `module:name` or `file.py:name`
(GRPO rewards, agent tools). Errors name the setting, the reference and what is missing."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from lmfast.errors import LMFastError


def load_object(reference: str, setting: str) -> Any:
    """The object `reference` names; LMFastError (prefixed with `setting`) when the file,
    the module or the name is missing, or the file fails to run."""
    target, _, attr = reference.rpartition(":")
    if not target or not attr:
        raise LMFastError(f"{setting}: {reference!r} is not module:name or file.py:name")
    if target.endswith(".py"):
        path = Path(target).expanduser()
        if not path.is_file():
            raise LMFastError(f"{setting}: {reference!r}: no file {path}")
        module_name = f"lmfast_user_{abs(hash(str(path.resolve())))}"
        module = sys.modules.get(module_name)
        if module is None:
            spec = importlib.util.spec_from_file_location(module_name, path)
            if spec is None or spec.loader is None:
                raise LMFastError(f"{setting}: {reference!r}: cannot load {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as e:
                del sys.modules[module_name]
                raise LMFastError(f"{setting}: {reference!r}: {path} failed: {e}") from e
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise LMFastError(f"{setting}: {reference!r}: cannot import {target!r} ({e})") from e
    if not hasattr(module, attr):
        raise LMFastError(f"{setting}: {reference!r}: {target} has no {attr}")
    return getattr(module, attr)
