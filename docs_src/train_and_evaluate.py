"""Fine-tune a model on a handful of chats, then compare it with its base on a task.

MODEL is any model reference: an alias, a Hugging Face folder or an artifact id (the docs'
test points it at a tiny model so this runs in seconds)."""

import json
import os
from pathlib import Path

import lmfast

MODEL = os.environ.get("MODEL", "smollm2-135m-instruct")
chats = Path("chats.jsonl")
with chats.open("w") as f:
    for city, country in [("Paris", "France"), ("Oslo", "Norway"), ("Lima", "Peru")] * 4:
        f.write(json.dumps({"prompt": f"Where is {city}?", "completion": f"In {country}."}) + "\n")

cfg = lmfast.load_config(
    values={"model.reference": MODEL, "data.path": str(chats.resolve()),
            "training.max_steps": 4, "training.max_seq_length": 256,
            "training.tracker": "none"},
)  # fmt: skip
result = lmfast.fine_tune(lmfast.FineTuneRequest(config=cfg))
print(result.artifact_id, result.metrics["train_loss"])  # an adapter artifact

report = lmfast.evaluate(
    lmfast.EvaluateRequest(models=[result.artifact_id, MODEL], tasks=["capitals"], limit=4)
)
print(report.report)  # a Markdown comparison; report.path holds plots and every example
