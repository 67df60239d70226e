"""The docs stay true: the README is short, the site builds offline with --strict, the
command reference is the CLI's own, every console example parses against the CLI, and every
code snippet is a file under docs_src/ that runs here."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from lmfast.cli.app import app
from lmfast.config import ServeConfig
from lmfast.serving import build_app
from tests.server_utils import running
from tests.tiny_models import make_tiny_llama

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
SNIPPETS = REPO / "docs_src"
PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]


def _run_snippet(
    name: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 600
) -> str:
    out = subprocess.run(
        [sys.executable, str(SNIPPETS / name)],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out.stdout


def test_the_readme_is_short() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) < 250


def test_the_site_builds_offline_and_strict(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path)],
        cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1", "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    python_page = (tmp_path / "python" / "index.html").read_text()
    assert "docs_src" not in python_page and "GenerateRequest" in python_page  # included
    tuning = (tmp_path / "fine-tuning" / "index.html").read_text()
    assert "<code>launch</code>" in tuning  # FineTuneRequest's fields, read from the model


def test_the_command_reference_is_the_clis_own(tmp_path: Path) -> None:
    fresh = tmp_path / "commands.md"
    subprocess.run(
        [sys.executable, "-m", "typer", "lmfast.cli.app", "utils", "docs", "--name", "lmfast",
         "--title", "Command reference", "--output", str(fresh)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    assert (DOCS / "commands.md").read_text() == fresh.read_text(), (
        "docs/commands.md is stale: run `make docs`"
    )


def _console_commands() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        if page.name == "commands.md":  # generated from the CLI: usage lines, not examples
            continue
        for block in re.findall(r"```console\n(.*?)```", page.read_text(), re.DOTALL):
            for line in block.replace("\\\n", " ").splitlines():  # continuation lines
                if line.startswith("$ lmfast "):
                    found.append((page.name, line[2:]))
    return found


def test_console_examples_parse_against_the_cli() -> None:
    root = typer.main.get_command(app)
    commands = _console_commands()
    assert len(commands) >= 10
    for page, line in commands:
        args = shlex.split(line.split(" | ")[0].split(" > ")[0], comments=True)[1:]
        command, context_args = root, args
        while (
            hasattr(command, "commands")
            and context_args
            and context_args[0]
            in (
                command.commands  # type: ignore[attr-defined]
            )
        ):
            command = command.commands[context_args[0]]  # type: ignore[attr-defined]
            context_args = context_args[1:]
        assert command is not root, f"{page}: {line}: no such command"
        try:
            command.make_context(command.name, list(context_args), resilient_parsing=False)
        except (typer.Exit, SystemExit):
            pass  # --help and the like
        except Exception as e:
            pytest.fail(f"{page}: `{line}` does not parse: {e}")


def test_every_python_block_is_a_snippet_that_a_test_runs() -> None:
    included = set()
    for page in PAGES:
        for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.DOTALL):
            match = re.fullmatch(r'--8<-- "docs_src/([\w.]+)"\n', block)
            assert match, f"{page.name}: inline Python; put it in docs_src/ and include it"
            included.add(match.group(1))
    files = {p.name for p in SNIPPETS.glob("*.py")}
    assert included == files
    tested = set(re.findall(r'_run_snippet\(\s*"([\w.]+)"', Path(__file__).read_text()))
    assert files <= tested, f"snippets no test runs: {files - tested}"


@pytest.mark.slow
def test_quickstart_runs_on_the_embedded_model() -> None:
    out = _run_snippet("quickstart.py", REPO)
    assert "The capital of France is Paris." in out  # greedy: the same reply every time
    assert "<EMAIL_ADDRESS>" in out and "ana@example.org" not in out
    assert "prompt_injection" in out


def test_the_grpo_reward_snippet_scores_through_the_reward_contract(tmp_path: Path) -> None:
    out = _run_snippet("grpo_reward.py", tmp_path)
    assert out.strip() == "[1.0, 0.5]"


def test_the_specialize_preview_snippet_draws_executed_tasks(tmp_path: Path) -> None:
    out = _run_snippet("specialize_preview.py", tmp_path)
    assert out.startswith("20 training tasks") and "3 held out" in out
    assert "user: Observation (opening_hours): " in out
    assert "Answer: The " in out and " is open " in out


def test_the_openai_client_snippet_talks_to_lmfast_serve(tmp_path: Path) -> None:
    with running(build_app(None, ServeConfig())) as base:
        out = _run_snippet("openai_client.py", tmp_path, {"LMFAST_BASE_URL": f"{base}/v1"})
    assert "Paris" in out


@pytest.mark.slow
def test_the_agent_snippet_runs(tmp_path: Path) -> None:
    out = _run_snippet("agent_tool.py", tmp_path)
    assert "tool calls;" in out


@pytest.mark.slow
def test_train_and_evaluate_snippet_runs_on_a_tiny_model(tmp_path: Path) -> None:
    tiny = make_tiny_llama(tmp_path / "tiny")
    out = _run_snippet("train_and_evaluate.py", tmp_path, {"MODEL": str(tiny)})
    assert "capitals" in out
    assert (tmp_path / "chats.jsonl").is_file()
