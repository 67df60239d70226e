"""Each capability and its faces: the CLI command and the MCP tool over the same function,
and the Studio page where a person does it in a browser.

A test checks these tables against the registered CLI commands, MCP tools and Studio routes,
so a capability can't gain one face and silently lack the other.
"""

from __future__ import annotations

# capability -> (CLI command, MCP tool)
CAPABILITIES: dict[str, tuple[str, str]] = {
    "generate": ("generate", "generate"),
    "prep_dataset": ("prep", "prep_dataset"),
    "explain_document": ("explain", "explain_document"),
    "fine_tune": ("train", "fine_tune"),
    "train_tokenizer": ("tokenizer train", "train_tokenizer"),
    "tune": ("tune", "tune"),
    "merge_adapter": ("merge", "merge_adapter"),
    "distill": ("distill", "distill"),
    "align_orpo": ("align", "align_orpo"),
    "specialize_agent": ("agent specialize", "specialize_agent"),
    "evaluate": ("eval", "evaluate"),
    "quantize": ("quantize", "quantize"),
    "export": ("export", "export_model"),
    "guard_check": ("guard check", "guard_check"),
    "list_models": ("models list", "list_models"),
    "model_info": ("models info", "model_info"),
    "convert_model": ("models convert", "convert_model"),
    "job_status": ("jobs status", "job_status"),
    "job_result": ("jobs result", "job_result"),
    "cancel_job": ("jobs cancel", "cancel_job"),
    "list_jobs": ("jobs list", "list_jobs"),
}

# CLI commands that are front-ends or local tooling rather than capabilities.
CLI_ONLY: dict[str, str] = {
    "doctor": "inspects the local environment",
    "plan": "previews settings for this machine",
    "templates list": "lists the bundled architecture file with plan estimates (agents pass "
    "model.template to fine_tune)",
    "chat": "interactive terminal front-end over generate",
    "serve": "starts the HTTP server",
    "speculate": "measures a draft for the server's --draft on this machine (Python: "
    "lmfast.inference.draft_measure.measure_draft)",
    "mcp": "starts the MCP server",
    "studio": "starts the web app, whose pages are thin faces over these capabilities",
    "jobs wait": "terminal progress bar over job_status",
    "guard train": "builds the local injection classifier, which every guard also builds on "
    "first use (Python: lmfast.guardrails.classifier.build)",
    "attention": "a heatmap for a person to look at (Python: lmfast.attention_map)",
    "agent run": "terminal agent loop over generate (MCP clients are agents themselves; "
    "agent scripts use MCP in turn: examples/agent_drives_training.py)",
}

# capability -> the Studio page that runs it (the same request model and job store). The rest
# (tokenizer training, search, merge, specialization, conversion) are CLI / MCP / Python only.
STUDIO: dict[str, str] = {
    "generate": "/chat",
    "guard_check": "/chat",  # every decision shown inline beside the question and the answer
    "prep_dataset": "/data",
    "explain_document": "/data/{art_id}",
    "fine_tune": "/train",
    "distill": "/train",
    "align_orpo": "/train",
    "evaluate": "/evaluate",
    "quantize": "/export",
    "export": "/export",
    "model_info": "/lineage/{art_id}",
    "list_models": "/lineage",
    "list_jobs": "/jobs",
    "job_status": "/jobs/{job_id}",
    "job_result": "/jobs/{job_id}",
    "cancel_job": "/jobs/{job_id}",
}
