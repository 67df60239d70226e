"""An Ollama Modelfile next to an exported GGUF, so `ollama create NAME -f Modelfile` works.

Ollama templates are Go templates, not Jinja. For the chat formats LMFast's model families
use (ChatML: SmolLM2, Qwen2; Zephyr: TinyLlama; Llama 3; Mistral [INST]) the matching Go
template is written; for any other, TEMPLATE is left out and Ollama reads the Jinja template
embedded in the GGUF (its own detection), which the file says in a comment."""

from __future__ import annotations

from pathlib import Path

_TEMPLATES: dict[str, tuple[str, list[str]]] = {
    "chatml": (
        "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
        "<|im_start|>assistant\n",
        ["<|im_start|>", "<|im_end|>"],
    ),
    "zephyr": (
        "{{- if .System }}<|system|>\n{{ .System }}</s>\n{{ end }}"
        "{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}</s>\n{{ end }}<|assistant|>\n",
        ["</s>", "<|user|>"],
    ),
    "llama3": (
        "{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}"
        "<|eot_id|>{{ end }}{{- range .Messages }}<|start_header_id|>{{ .Role }}"
        "<|end_header_id|>\n\n{{ .Content }}<|eot_id|>{{ end }}"
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        ["<|eot_id|>", "<|start_header_id|>"],
    ),
    "mistral": (
        '{{- range .Messages }}{{- if eq .Role "user" }}[INST] {{ if $.System }}{{ $.System }}'
        "\n\n{{ end }}{{ .Content }} [/INST]{{- else }} {{ .Content }}</s>{{- end }}{{ end }}",
        ["[INST]", "[/INST]"],
    ),
}


def chat_family(template: str | None) -> str | None:
    """Which known chat format a Jinja chat template renders."""
    if not template:
        return None
    if "<|im_start|>" in template:
        return "chatml"
    if "<|start_header_id|>" in template:
        return "llama3"
    if "<|user|>" in template and "<|assistant|>" in template:
        return "zephyr"
    if "[INST]" in template:
        return "mistral"
    return None


def write_modelfile(
    folder: Path, gguf_name: str, chat_template: str | None, system: str | None = None
) -> Path:
    family = chat_family(chat_template)
    lines = ["# Ollama, from this folder: ollama create NAME -f Modelfile", f"FROM ./{gguf_name}"]
    if family is not None:
        template, stops = _TEMPLATES[family]
        lines.append(f'TEMPLATE """{template}"""')
        lines += [f'PARAMETER stop "{s}"' for s in stops]
    else:
        lines.append("# No TEMPLATE: Ollama uses the chat template embedded in the GGUF.")
    if system:
        lines.append(f'SYSTEM """{system}"""')
    path = folder / "Modelfile"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
