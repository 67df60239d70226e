"""Many fine-tunes over one base in one server: each LoRA adapter is a model name of its own.

The base GGUF is loaded once; every adapter is a GGUF LoRA (converted from PEFT by
`export.lora_gguf`, cached by content) that llama.cpp applies to the batches of the requests
naming it, as llama-server's `--lora` and vLLM's `--enable-lora` do. Memory per adapter is
its LoRA matrices (a few MB), not another copy of the model."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from lmfast.config import ADAPTER_NAME
from lmfast.errors import ConfigError, ModelNotFoundError
from lmfast.inference.base import (
    Engine,
    EngineBusyError,
    EngineRequest,
    GenerationStream,
    RequestFieldError,
)
from lmfast.pipeline import Pipeline
from lmfast.progress import ProgressFn, no_progress
from lmfast.registry import ResolvedModel
from lmfast.serving.state import APIError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from lmfast.serving.state import ServerState


def _refused(name: str, message: str) -> ConfigError:
    return ConfigError([(f"serve.adapters.{name}", message)])


def parse_adapter_options(values: list[str]) -> dict[str, str]:
    """`--adapter NAME=REF` (or a bare REF, named after the adapter's folder) -> {name: ref}."""
    out: dict[str, str] = {}
    for value in values:
        name, sep, ref = value.partition("=")
        if sep and not ADAPTER_NAME.fullmatch(name) and not Path(value).expanduser().exists():
            raise ConfigError([("--adapter", f"{value!r}: the name {name!r} must be letters, "
                                "digits and . _ - : (at most 64)")])  # fmt: skip
        if not sep or not ADAPTER_NAME.fullmatch(name):
            name, ref = Path(value.rstrip("/")).name.removesuffix(".gguf"), value
        if not ref or not ADAPTER_NAME.fullmatch(name):
            raise ConfigError([("--adapter", f"{value!r}: give NAME=ADAPTER, NAME letters, "
                                "digits and . _ - : (ADAPTER: an artifact id, a PEFT folder "
                                "or a GGUF LoRA file)")])  # fmt: skip
        if name in out:
            raise ConfigError([("--adapter", f"the name {name!r} is given twice")])
        out[name] = ref
    return out


def _same_shape(name: str, adapter: str, a: Any, base: ResolvedModel, b: Any) -> None:
    fields = ("num_layers", "hidden_size", "num_heads", "num_kv_heads")
    family = {"mistral": "llama"}
    differ = [f for f in fields if getattr(a, f) != getattr(b, f)]
    arch_a, arch_b = (family.get(x.lower(), x.lower()) for x in (a.architecture, b.architecture))
    if arch_a != arch_b:
        differ.insert(0, "architecture")
    if differ:
        shown = ", ".join(f"{f} {getattr(a, f)} vs {getattr(b, f)}" for f in differ)
        raise _refused(name, f"{adapter!r} was trained on another base than {base.name} "
                             f"({shown}); serve it with its own base model")  # fmt: skip


def prepare_adapters(
    adapters: dict[str, str], base: ResolvedModel, progress: ProgressFn = no_progress
) -> dict[str, str]:
    """{name: GGUF LoRA file} for the engine: each reference resolved, checked against the
    served base, and converted once (cached under LMFAST_HOME by content)."""
    from lmfast.export.lora_gguf import lora_to_gguf
    from lmfast.gguf_meta import read_gguf
    from lmfast.hashing import content_version
    from lmfast.home import lmfast_home
    from lmfast.registry import model_spec, resolve_model

    if not adapters:
        return {}
    if base.format != "gguf":
        raise ConfigError([("serve.adapters", f"adapters are served by llama.cpp over a "
                            f"GGUF base; {base.name} is a {base.format} model (export it: "
                            f"lmfast export {base.reference} --format gguf)")])  # fmt: skip
    base_spec = read_gguf(base.path).spec
    out: dict[str, str] = {}
    for i, (name, ref) in enumerate(adapters.items()):
        if name == base.name:
            raise _refused(name, "that is the base model's name; choose another")
        path = Path(ref).expanduser()
        if path.suffix == ".gguf" and path.is_file():
            out[name] = str(path.resolve())  # a GGUF LoRA already; llama.cpp checks it
            continue
        try:
            resolved = resolve_model(ref)
        except ModelNotFoundError as e:
            raise _refused(name, str(e)) from None
        if resolved.format != "adapter":
            raise _refused(name, f"{ref} is a {resolved.format} model, not a LoRA adapter; "
                                 f"serve it on its own (lmfast serve {ref})")  # fmt: skip
        _same_shape(name, ref, model_spec(ref), base, base_spec)
        key = content_version([resolved.path], base_spec.model_dump())[:20]
        file = lmfast_home() / "cache" / "lora-gguf" / f"{key}.gguf"
        if not file.is_file():
            progress(i, len(adapters), f"converting adapter {name} to a GGUF LoRA")
            file.parent.mkdir(parents=True, exist_ok=True)
            lora_to_gguf(resolved.path, base_spec, file)
        out[name] = str(file)
    progress(len(adapters), len(adapters), f"{len(out)} adapter(s) ready")
    return out


class AdapterEngine:
    """The served engine seen through one adapter: every request it submits names it. The
    rest (tokenizer, chat template, stats) is the base engine's."""

    def __init__(self, engine: Engine, adapter: str) -> None:
        self._engine, self.adapter = engine, adapter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def submit(self, request: EngineRequest) -> GenerationStream:
        return self._engine.submit(dataclasses.replace(request, adapter=self.adapter))


class LoadAdapter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lora_name: str = Field(min_length=1, max_length=64, description="Model name to serve it as.")
    lora_path: str = Field(
        min_length=1, max_length=4096, description="Artifact id, PEFT folder or GGUF LoRA file."
    )


class UnloadAdapter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lora_name: str = Field(min_length=1, max_length=64)


def register_adapter_routes(app: FastAPI, state: ServerState) -> None:
    """vLLM's runtime LoRA routes: load an adapter as a new model name, unload one."""

    def ready() -> Any:
        if not state.config.adapter_updates:
            raise APIError(403, "adapter updates are off; start the server with "
                           "--adapter-updates (serve.adapter_updates) to allow them",
                           code="adapter_updates_disabled")  # fmt: skip
        if state.pipeline is None or state.engine is None:
            raise APIError(503, "the model is still loading; retry shortly", code="model_loading")
        if not hasattr(state.engine, "add_adapter") or state.prepare_adapter is None:
            raise APIError(400, "adapters are applied by llama.cpp; this server's engine is "
                           f"{getattr(state.engine, 'name', 'another')}")  # fmt: skip
        return state.engine

    @app.post("/v1/load_lora_adapter")
    async def load_adapter(body: LoadAdapter) -> dict[str, Any]:
        engine = ready()
        name = body.lora_name
        if not ADAPTER_NAME.fullmatch(name):
            raise APIError(400, f"lora_name: {name!r} must be letters, digits and . _ - :",
                           param="lora_name")  # fmt: skip
        if name in state.adapters:
            raise APIError(400, f"lora_name: {name!r} is already served; unload it first",
                           param="lora_name", code="adapter_exists")  # fmt: skip
        try:
            file = await asyncio.to_thread(state.prepare_adapter, name, body.lora_path)  # type: ignore[arg-type]
            await asyncio.to_thread(engine.add_adapter, name, file)
        except ConfigError as e:
            raise APIError(400, f"lora_path: {e.problems[0][1]}", param="lora_path") from None
        except (RequestFieldError, ValueError) as e:
            raise APIError(400, str(e), param="lora_path") from None
        state.adapter_pipelines[name] = Pipeline(
            AdapterEngine(engine, name),  # type: ignore[arg-type]
            state.hooks,
            model=name,
        )
        state.adapters[name] = body.lora_path
        return {"id": name, "object": "model", "parent": state.model_id, "root": body.lora_path}

    @app.post("/v1/unload_lora_adapter")
    async def unload_adapter(body: UnloadAdapter) -> dict[str, Any]:
        engine = ready()
        name = body.lora_name
        if name not in state.adapters:
            served = ", ".join(sorted(state.adapters)) or "none"
            raise APIError(404, f"lora_name: {name!r} is not served (adapters: {served})",
                           param="lora_name", code="model_not_found")  # fmt: skip
        try:
            await asyncio.to_thread(engine.remove_adapter, name)
        except EngineBusyError as e:
            raise APIError(409, f"{e}; unload it when they finish", code="adapter_in_use") from None
        ref = state.adapters.pop(name)
        state.adapter_pipelines.pop(name, None)
        return {"id": name, "object": "model", "deleted": True, "root": ref}
