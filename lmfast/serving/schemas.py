"""OpenAI request bodies, validated. Unknown fields are ignored (clients send many)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from lmfast.inference.base import ChatMessage, SamplingParams, ToolCall, ToolSpec
from lmfast.pipeline import ResponseFormat


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


# Parameters that would change the output if honoured; we do not implement them, so a request
# carrying them is refused rather than answered as if they had been applied.
_UNSUPPORTED = {
    "functions": "use tools",
    "function_call": "use tool_choice",
    "suffix": "insertion is not supported",
    "audio": "only text is supported",
    "modalities": "only text is supported",
    "prediction": "predicted outputs are not supported",
    "web_search_options": "web search is not supported",
}


class _Sampling(_Body):
    model: str = Field(min_length=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0, le=100_000)
    min_p: float = Field(0.0, ge=0.0, le=1.0)
    repetition_penalty: float = Field(1.0, gt=0.0, le=10.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=1, description="Only one choice per request is supported.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    logit_bias: dict[str, float] | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_unsupported(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, why in _UNSUPPORTED.items():
                if data.get(key) not in (None, [], {}):
                    raise PydanticCustomError(
                        "unsupported", "{key} is not supported ({why})", {"key": key, "why": why}
                    )
        return data

    @field_validator("logit_bias")
    @classmethod
    def _bias(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        for key, bias in (v or {}).items():
            if not key.isdigit():
                raise ValueError(f"keys are token ids as strings, got {key!r}")
            if not -100 <= bias <= 100:
                raise ValueError(f"biases lie in [-100, 100], got {bias} for token {key}")
        return v

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        stops = [v] if isinstance(v, str) else (v or [])
        if len(stops) > 16 or any(not s for s in stops):
            raise ValueError("stop takes up to 16 non-empty strings")
        return v

    def sampling(self, max_tokens: int, logprobs: bool, top_logprobs: int) -> SamplingParams:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            min_p=self.min_p,
            repetition_penalty=self.repetition_penalty,
            frequency_penalty=self.frequency_penalty,
            presence_penalty=self.presence_penalty,
            seed=self.seed,
            stop=stops,
            logprobs=logprobs,
            top_logprobs=top_logprobs,
            logit_bias={int(k): v for k, v in (self.logit_bias or {}).items()},
        )


class StreamOptions(_Body):
    include_usage: bool = False


class RequestMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    def to_chat(self) -> ChatMessage:
        content = self.content
        if isinstance(content, list):  # content parts: keep the text ones
            texts = []
            for part in content:
                if part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise ValueError("only text content parts are supported")
                texts.append(part["text"])
            content = "".join(texts)
        role = "system" if self.role == "developer" else self.role
        return ChatMessage(
            role=role,
            content=content,
            tool_calls=self.tool_calls,
            tool_call_id=self.tool_call_id,
            name=self.name,
        )


class FunctionDef(_Body):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})


class ToolDef(_Body):
    type: Literal["function"]
    function: FunctionDef


class NamedToolChoice(_Body):
    type: Literal["function"]
    function: dict[str, str]


class JsonSchemaFormat(_Body):
    name: str = "response"
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None


class ResponseFormatBody(_Body):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormatBody:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type json_schema needs json_schema.schema")
        return self


class ChatCompletionRequest(_Sampling):
    messages: list[RequestMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1, le=32768)
    max_completion_tokens: int | None = Field(None, ge=1, le=32768)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[ToolDef] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None  # unset means one call per turn
    response_format: ResponseFormatBody | None = None

    @field_validator("top_logprobs")
    @classmethod
    def _top_needs_logprobs(cls, v: int | None, info: ValidationInfo) -> int | None:
        if v and not info.data.get("logprobs"):
            raise ValueError("top_logprobs needs logprobs=true")
        return v

    @field_validator("tool_choice")
    @classmethod
    def _choice_needs_tools(cls, v: Any, info: ValidationInfo) -> Any:
        if v not in (None, "none", "auto") and not info.data.get("tools"):
            raise ValueError("tool_choice needs tools")
        if isinstance(v, NamedToolChoice) and not v.function.get("name"):
            raise ValueError("tool_choice.function.name is required")
        return v

    def chat_messages(self) -> list[ChatMessage]:
        out = []
        for i, m in enumerate(self.messages):
            try:
                out.append(m.to_chat())
            except ValidationError as e:
                msg = e.errors()[0]["msg"].removeprefix("Value error, ")
                raise ValueError(f"messages.{i}: {msg}") from None
            except ValueError as e:
                raise ValueError(f"messages.{i}: {e}") from None
        return out

    def tool_specs(self) -> list[ToolSpec] | None:
        if not self.tools:
            return None
        return [
            ToolSpec(
                name=t.function.name,
                description=t.function.description,
                parameters=t.function.parameters,
            )
            for t in self.tools
        ]

    def tool_choice_name(self) -> str:
        if isinstance(self.tool_choice, NamedToolChoice):
            return self.tool_choice.function["name"]
        return self.tool_choice or "auto"

    def format(self) -> ResponseFormat | None:
        rf = self.response_format
        if rf is None or rf.type == "text":
            return None
        return ResponseFormat(
            type=rf.type, json_schema=rf.json_schema.schema_ if rf.json_schema else None
        )

    def params(self, default_max: int) -> SamplingParams:
        max_tokens = self.max_completion_tokens or self.max_tokens or default_max
        return self.sampling(max_tokens, self.logprobs, self.top_logprobs or 0)


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int = Field(16, ge=0, le=32768)
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool = False

    @field_validator("prompt")
    @classmethod
    def _non_empty(cls, v: Any) -> Any:
        if isinstance(v, list) and not v:
            raise ValueError("prompt must not be an empty list")
        return v

    def prompts(self) -> list[str | list[int]]:
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if all(isinstance(x, int) for x in p):
            return [list(p)]  # type: ignore[arg-type]
        return list(p)  # type: ignore[arg-type]

    def params(self) -> SamplingParams:
        return self.sampling(self.max_tokens, self.logprobs is not None, self.logprobs or 0)


_Sampling.model_rebuild()
