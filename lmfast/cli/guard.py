"""`lmfast guard`: what a guard policy would do with a text (PII, prompt injection)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from lmfast.cli.output import console, print_json


def guard_command(
    text: Annotated[str, typer.Argument(help="The text to check ('-' reads standard input).")],
    policy: Annotated[
        str, typer.Option(help="strict, balanced, permissive, or a policy YAML file.")
    ] = "balanced",
    stage: Annotated[
        str, typer.Option(help="input (a request) or output (a model reply).")
    ] = "input",
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Check TEXT against a guard policy: whether it would be refused and why, the text as
    the policy passes it on (redacted), and every finding (entity types, injection risk)."""
    from lmfast.guardrails.check import GuardCheckRequest, guard_check

    body = sys.stdin.read() if text == "-" else text
    result = guard_check(GuardCheckRequest(text=body, policy=policy, stage=stage))  # type: ignore[arg-type]
    if json_out:
        print_json(result)
        return
    if result.blocked:
        console.print(f"[red]blocked[/] ({result.code}): {result.reason}", highlight=False)
    else:
        console.print(result.text or "", markup=False, highlight=False)
    for d in result.decisions:
        what = ", ".join(d.get("entities", [])) or f"risk {d.get('risk')}"
        reasons = "; ".join(d.get("reasons", []))
        console.print(f"[dim]{d['stage']} {d['check']}: {d['action']} {what} {reasons}[/]",
                      highlight=False)  # fmt: skip
