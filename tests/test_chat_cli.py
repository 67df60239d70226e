"""`lmfast chat` in a pseudo-terminal and through a pipe, plus its session logic."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from lmfast.chat_session import ChatSession, read_message


class _FakePipeline:
    """Scripted replies: the session logic is tested without a model."""

    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def stream(self, messages, params):  # type: ignore[no-untyped-def]
        self.seen.append([f"{m.role}:{m.content}" for m in messages])
        yield from ["Hello", " there"]


def test_session_commands(tmp_path: Path) -> None:
    fake = _FakePipeline()
    s = ChatSession(pipeline=fake)  # type: ignore[arg-type]
    reply = s.handle("hi")
    assert "".join(reply.pieces or []) == "Hello there"
    assert [m.role for m in s.history] == ["user", "assistant"]
    assert s.handle("/system Be brief.").text == "system message set"
    "".join(s.handle("again").pieces or [])
    assert fake.seen[-1][0] == "system:Be brief."
    assert s.handle("/params temperature=0.1 max_tokens=9").text.startswith("ok")
    assert (s.params.temperature, s.params.max_tokens) == (0.1, 9)
    assert "temperature" in s.handle("/params temperature=7").text  # rejected, named
    assert s.params.temperature == 0.1
    assert "unknown setting" in s.handle("/params nope=1").text
    saved = tmp_path / "chat.json"
    assert "saved 4 messages" in s.handle(f"/save {saved}").text
    assert json.loads(saved.read_text())["system"] == "Be brief."
    assert s.handle("/reset").text == "conversation cleared" and s.history == []
    assert "loaded 4 messages" in s.handle(f"/load {saved}").text
    assert "cannot load" in s.handle(f"/load {tmp_path / 'missing.json'}").text
    assert s.handle("/bogus").text.startswith("unknown command")
    assert s.handle("/exit").kind == "exit"


def test_save_errors_keep_the_session_and_leave_no_stray_files(tmp_path: Path) -> None:
    s = ChatSession(pipeline=_FakePipeline())  # type: ignore[arg-type]
    "".join(s.handle("hi").pieces or [])
    folder = tmp_path / "out"
    folder.mkdir()
    assert "is a folder" in s.handle(f"/save {folder}").text
    assert "does not exist" in s.handle(f"/save {tmp_path / 'missing' / 'c.json'}").text
    assert len(s.history) == 2  # the conversation survives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no <dir>.tmp beside it
    assert list(folder.iterdir()) == []
    folder.chmod(0o500)
    try:
        msg = s.handle(f"/save {folder / 'c.json'}").text
        if "saved" not in msg:  # root may write anyway; otherwise a clear refusal
            assert "cannot save" in msg and "kept" in msg
    finally:
        folder.chmod(0o700)
    assert "saved 2 messages" in s.handle(f"/save {folder / 'c.json'}").text
    assert [p.name for p in folder.iterdir()] == ["c.json"]


@pytest.mark.slow
def test_chat_json_lines_through_a_pipe() -> None:
    script = "Write two short lines about the sea, one per line.\nSay hello.\n"
    out = subprocess.run(
        [sys.executable, "-m", "lmfast", "chat", "--temperature", "0", "--json",
         "--max-tokens", "40"],
        input=script,
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    answers = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(answers) == 2 and all(a["role"] == "assistant" for a in answers)
    assert all(a["content"] for a in answers)


def test_multiline_input() -> None:
    assert read_message("one \\", iter(["two"])) == "one \ntwo"
    assert read_message('"""', iter(["a", "b", '"""'])) == "a\nb"
    assert read_message('"""inline"""', iter([])) == "inline"


@pytest.mark.slow
def test_chat_through_a_pipe(tmp_path: Path) -> None:
    script = "What is the capital of France?\n/save {}\n/exit\n".format(tmp_path / "c.json")
    out = subprocess.run(
        [sys.executable, "-m", "lmfast", "chat", "--temperature", "0"],
        input=script,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "Paris" in out.stdout
    assert "saved 2 messages" in out.stderr  # command feedback stays off stdout
    saved = json.loads((tmp_path / "c.json").read_text())
    assert [m["role"] for m in saved["messages"]] == ["user", "assistant"]


@pytest.mark.slow
def test_chat_in_a_pseudo_terminal() -> None:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "lmfast", "chat", "--temperature", "0"],
        encoding="utf-8",
        timeout=120,
        dimensions=(40, 120),
    )
    try:
        child.expect("you>")
        child.sendline("What is the capital of France?")
        child.expect("Paris")
        child.expect("you>")
        child.sendline("/reset")
        child.expect("conversation cleared")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
