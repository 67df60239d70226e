"""Which field holds the text, and in which layout: raw text, chat messages, alpaca,
sharegpt or prompt/response. Records become (text for filtering, conversation or None)."""

from __future__ import annotations

from typing import Any, Literal

from lmfast.data.readers import DataError

Format = Literal["auto", "text", "messages", "alpaca", "sharegpt", "prompt_response"]
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


def record_text(record: dict[str, Any], fmt: Format, field: str | None) -> str | None:
    """The text filters and dedup see: the field, or the conversation's contents."""
    if fmt == "text":
        value = record.get(field or "text")
        if value is None and field != "text":
            value = record.get("text")  # plain-text files in a folder of other records
        return value if isinstance(value, str) else None
    conv = to_conversation(record, fmt)
    if not conv:
        return None
    return "\n\n".join(m["content"] for m in conv)
