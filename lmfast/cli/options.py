"""Options several commands share, defined once so their flags and help stay the same."""

from __future__ import annotations

from typing import Annotated

import typer

GuardOpt = Annotated[
    str | None,
    typer.Option(
        help="Guard policy (PII, prompt injection): strict, balanced, permissive, a YAML "
        "file, or off (default: env LMFAST_GUARD, else off)."
    ),
]
