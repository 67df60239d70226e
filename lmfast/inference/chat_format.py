"""Chat messages (with tool calls and tool results) -> the dicts a chat template renders."""

from __future__ import annotations

import json
from typing import Any

from lmfast.inference.base import ChatMessage, ToolSpec
from lmfast.inference.tools import CLOSE, OPEN, tools_system_prompt


def template_supports_tools(template: str | None) -> bool:
    """Templates that render a `tools` variable (Qwen2.5, Llama 3.1, Hermes ...)."""
    return bool(template) and "tools" in str(template)


def prepare_messages(
    messages: list[ChatMessage],
    *,
    tools: list[ToolSpec] | None,
    default_system: str | None,
    native_tools: bool,
) -> list[dict[str, Any]]:
    """Plain {role, content} dicts every template can render.

    Assistant tool calls become Hermes `<tool_call>` text and tool results `<tool_response>`
    text, so templates without tool support still show the model the whole exchange; when
    the template lacks tool support the tool list is added to the system message.
    """
    out: list[dict[str, Any]] = []
    for m in messages:
        content = m.content or ""
        if m.role == "assistant" and m.tool_calls:
            calls = "\n".join(
                OPEN
                + json.dumps(
                    {"name": c.function.name, "arguments": _args(c.function.arguments)},
                    ensure_ascii=False,
                )
                + CLOSE
                for c in m.tool_calls
            )
            content = f"{content}\n{calls}".strip()
        elif m.role == "tool":
            content = f"<tool_response>\n{content}\n</tool_response>"
        out.append({"role": m.role, "content": content})
    if not any(d["role"] == "system" for d in out) and default_system:
        out.insert(0, {"role": "system", "content": default_system})
    if tools and not native_tools:
        extra = tools_system_prompt(tools)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{extra}"}
        else:
            out.insert(0, {"role": "system", "content": extra})
    return out


def openai_tools(tools: list[ToolSpec]) -> list[dict[str, Any]]:
    """Tools in OpenAI's shape, as templates with native tool support expect them."""
    return [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
        }
        for t in tools
    ]


def _args(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def render_with_tokenizer(
    tokenizer: Any,
    messages: list[ChatMessage],
    tools: list[ToolSpec] | None,
    default_system: str | None,
) -> str:
    """The prompt for a Hugging Face tokenizer's own chat template (transformers, vLLM)."""
    native = template_supports_tools(getattr(tokenizer, "chat_template", None))
    msgs = prepare_messages(
        messages, tools=tools, default_system=default_system, native_tools=native
    )
    return str(
        tokenizer.apply_chat_template(
            msgs,
            tools=openai_tools(tools) if tools and native else None,
            tokenize=False,
            add_generation_prompt=True,
        )
    )
