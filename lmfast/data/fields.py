"""Which field holds the text, and in which layout: raw text, chat messages, alpaca,
sharegpt, prompt/response or preference pairs. Records become (text for filtering,
conversation or None)."""

from __future__ import annotations

from typing import Any, Literal

from lmfast.data.readers import DataError

Format = Literal["auto", "text", "messages", "alpaca", "sharegpt", "prompt_response", "preference"]
TEXT_FIELDS = ("text", "content", "body", "document", "raw_content")
PROMPT_PAIRS = (
    ("prompt", "response"),
    ("prompt", "completion"),
    ("question", "answer"),
    ("input", "output"),
)
_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "bot": "assistant",
    "model": "assistant",
}


def detect_format(record: dict[str, Any], text_field: str | None) -> tuple[Format, str | None]:
    """(layout, text field) from the first record; a clear error lists the fields present."""
    keys = set(record)
    if text_field:
        if text_field not in keys:
            raise DataError(
                f"text_field: {text_field!r} is not in the records; fields present: "
                f"{', '.join(sorted(keys))}"
            )
        return "text", text_field
    if {"chosen", "rejected"} <= keys:
        return "preference", None
    if isinstance(record.get("messages"), list):
        return "messages", "messages"
    if isinstance(record.get("conversations"), list):
        return "sharegpt", "conversations"
    if {"instruction", "output"} <= keys:
        return "alpaca", None
    for a, b in PROMPT_PAIRS:
        if {a, b} <= keys:
            return "prompt_response", None
    for f in TEXT_FIELDS:
        if isinstance(record.get(f), str):
            return "text", f
    raise DataError(
        "cannot find the text: expected a text field (" + ", ".join(TEXT_FIELDS) + "), "
        "messages, conversations, instruction/output or prompt/response; fields present: "
        f"{', '.join(sorted(keys)) or '(none)'}. Name one with text_field."
    )


def to_conversation(record: dict[str, Any], fmt: Format) -> list[dict[str, str]] | None:
    """Chat layouts as OpenAI-style messages; None for raw text."""
    if fmt == "messages":
        return [
            {"role": str(m.get("role", "user")), "content": str(m.get("content") or "")}
            for m in record.get("messages") or []
        ]
    if fmt == "sharegpt":
        return [
            {
                "role": _ROLES.get(str(m.get("from", "")).lower(), "user"),
                "content": str(m.get("value") or ""),
            }
            for m in record.get("conversations") or []
        ]
    if fmt == "alpaca":
        prompt = str(record.get("instruction") or "")
        if record.get("input"):
            prompt += "\n\n" + str(record["input"])
        return [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": str(record.get("output") or "")},
        ]
    if fmt == "prompt_response":
        for a, b in PROMPT_PAIRS:
            if a in record and b in record:
                return [
                    {"role": "user", "content": str(record[a] or "")},
                    {"role": "assistant", "content": str(record[b] or "")},
                ]
    return None


def _messages(value: Any, field: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise ValueError(f"{field!r} must be a string or a non-empty list of messages")
    out = []
    for m in value:
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise ValueError(f"{field!r} holds a message without string 'content': {m!r:.80}")
        out.append({"role": _ROLES.get(str(m.get("role", "user")).lower(), "user"),
                    "content": m["content"]})  # fmt: skip
    return out


def _answer(value: Any, field: str) -> tuple[list[dict[str, str]], str]:
    """(conversation before the answer, the answer) of a chosen / rejected value: a string,
    or chat-style messages ending with the assistant's turn."""
    if isinstance(value, str):
        return [], value
    messages = _messages(value, field)
    if messages[-1]["role"] != "assistant":
        raise ValueError(f"{field!r} must end with an assistant message")
    return messages[:-1], messages[-1]["content"]


def to_preference(record: dict[str, Any]) -> dict[str, Any]:
    """A preference record as {prompt: messages, chosen: str, rejected: str}. Accepts
    {prompt, chosen, rejected} with strings or messages, and chat-style pairs whose chosen and
    rejected conversations share the prompt. Raises ValueError naming the problem."""
    missing = [f for f in ("chosen", "rejected") if record.get(f) in (None, "", [])]
    if missing:
        raise ValueError(f"missing {' and '.join(repr(f) for f in missing)}")
    before_c, chosen = _answer(record["chosen"], "chosen")
    before_r, rejected = _answer(record["rejected"], "rejected")
    if record.get("prompt") not in (None, "", []):
        prompt = _messages(record["prompt"], "prompt")
    elif before_c:
        prompt = before_c
    else:
        raise ValueError("missing 'prompt' (or chosen / rejected as conversations)")
    if before_c and before_r and before_c != before_r:
        raise ValueError("chosen and rejected conversations start with different prompts")
    if not chosen.strip() or not rejected.strip():
        raise ValueError("an empty chosen or rejected answer")
    if chosen.strip() == rejected.strip():
        raise ValueError("chosen and rejected are the same answer")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def record_text(record: dict[str, Any], fmt: Format, field: str | None) -> str | None:
    """The text filters and dedup see: the field, or the conversation's contents without its
    system message (a shared system prompt would make every conversation a near duplicate
    of every other)."""
    if fmt == "preference":
        try:
            pair = to_preference(record)
        except ValueError:
            return None
        prompt = "\n\n".join(m["content"] for m in pair["prompt"])
        return f"{prompt}\n\n{pair['chosen']}\n\n{pair['rejected']}"
    if fmt == "text":
        value = record.get(field or "text")
        if value is None and field != "text":
            value = record.get("text")  # plain-text files in a folder of other records
        return value if isinstance(value, str) else None
    conv = to_conversation(record, fmt)
    if not conv:
        return None
    return "\n\n".join(m["content"] for m in conv if m["role"] != "system")
