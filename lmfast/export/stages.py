"""The stages every export shares: any model reference -> a Hugging Face folder (merging an
adapter, dequantizing a GGUF) -> a float GGUF. Each stage's output is an artifact linked to
its parent, and a stage already done for an artifact is reused instead of repeated."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lmfast.artifacts import Artifact, ArtifactStore
from lmfast.export.gguf_convert import FloatType, hf_to_gguf
from lmfast.progress import ProgressFn, no_progress
from lmfast.registry import ResolvedModel, resolve_model


@dataclass
class Source:
    """A Hugging Face folder ready to export, and where it came from."""

    folder: Path
    parent: str  # artifact id, or the path when the model is not an artifact
    name: str
    default_system: str | None
    lineage: list[str]  # artifact ids made on the way, oldest first


def _reuse(store: ArtifactStore, kind: str, parent: str, **config: object) -> Artifact | None:
    """The newest `kind` artifact made from `parent` with these settings, or None."""
    for art in store.list(kind):  # type: ignore[arg-type]
        m = art.manifest
        if m.parents == [parent] and all(m.config.get(k) == v for k, v in config.items()):
            return art
    return None


def _immutable(resolved: ResolvedModel) -> bool:
    # Artifacts and embedded aliases never change; a path or hub cache can.
    return resolved.source in ("artifact", "alias")


def hf_source(reference: str, store: ArtifactStore, progress: ProgressFn = no_progress) -> Source:
    """A Hugging Face folder for `reference`: merged when it is an adapter, dequantized to
    float32 when it is a GGUF, as is when it is already a Hugging Face model."""
    from lmfast.convert import ConvertRequest, convert_to_hf
    from lmfast.training.merge import MergeRequest, merge_adapter

    resolved = resolve_model(reference, store=store)
    parent = resolved.artifact_id or resolved.hub_id or str(resolved.path)
    if resolved.format == "hf":
        return Source(resolved.path, parent, resolved.name, resolved.default_system, [])
    if resolved.format == "adapter":
        progress(0, 1, f"merging adapter {resolved.name}")
        merged = _reuse(store, "model", parent, dtype="auto") if _immutable(resolved) else None
        if merged is None:
            result = merge_adapter(MergeRequest(adapter=reference), store=store)
            merged = store.get(result.artifact_id)
        return _from_artifact(merged, resolved)
    progress(0, 1, f"dequantizing {resolved.name} to float32")
    converted = _reuse(store, "model", parent, dtype="float32") if _immutable(resolved) else None
    if converted is None:
        result = convert_to_hf(ConvertRequest(model=reference, dtype="float32"), store=store)
        converted = store.get(result.artifact_id)
    return _from_artifact(converted, resolved)


def _from_artifact(art: Artifact, resolved: ResolvedModel) -> Source:
    return Source(
        folder=art.path,
        parent=art.id,
        name=resolved.name,
        default_system=art.manifest.extra.get("default_system") or resolved.default_system,
        lineage=[art.id],
    )


def float_gguf(
    source: Source,
    store: ArtifactStore,
    outtype: FloatType = "f16",
    name: str | None = None,
    progress: ProgressFn = no_progress,
) -> Artifact:
    """The source as a float GGUF export artifact (reused when already converted)."""
    from lmfast.export.modelfile import write_modelfile
    from lmfast.gguf_meta import read_gguf

    found = _reuse(store, "export", source.parent, step="gguf", outtype=outtype)
    if found is not None and store.exists(source.parent):
        return found
    config = {"step": "gguf", "outtype": outtype, "source": source.parent}
    with store.create(
        "export", name=name or f"{source.name} ({outtype} GGUF)", parents=[source.parent],
        config=config,
    ) as draft:  # fmt: skip
        file = f"{slug(source.name)}.{outtype}.gguf"
        conv = hf_to_gguf(source.folder, draft.path / file, outtype, source.name, progress)
        write_modelfile(draft.path, file, read_gguf(draft.path / file).chat_template,
                        source.default_system)  # fmt: skip
        draft.extra = {
            "format": "gguf", "type": outtype, "bytes": conv.bytes, "file": file,
            "architecture": conv.architecture, "parameters": conv.parameters,
            "pre_tokenizer": conv.pre_tokenizer, "default_system": source.default_system,
        }  # fmt: skip
    assert draft.artifact is not None
    return draft.artifact


def slug(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_" else "-" for c in name.lower())
    return "-".join(p for p in keep.split("-") if p)[:60] or "model"
