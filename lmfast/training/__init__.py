"""Training: LoRA / QLoRA / full fine-tuning and continued pretraining, resumable and tracked.

`fine_tune(FineTuneRequest)` is the capability; `SLMTrainer(config).train(data)` is the
one-line notebook entry; `merge_adapter` folds an adapter into a full model artifact.
"""

from __future__ import annotations

from typing import Any

from lmfast.training.finetune import FineTuneRequest, FineTuneResult, fine_tune
from lmfast.training.merge import MergeRequest, MergeResult, merge_adapter

__all__ = [
    "FineTuneRequest",
    "FineTuneResult",
    "MergeRequest",
    "MergeResult",
    "SLMTrainer",
    "fine_tune",
    "merge_adapter",
]


class SLMTrainer:
    """Notebook entry: `SLMTrainer(config).train("data.jsonl")` (or a `datasets` object)."""

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        from lmfast.config import LMFastConfig, load_config

        if config is None or isinstance(config, (str, bytes)) or hasattr(config, "__fspath__"):
            items = [f"{k.replace('__', '.')}={v}" for k, v in overrides.items()]
            config = load_config(config, items)
        elif isinstance(config, dict):
            config = LMFastConfig.model_validate(config)
        self.config: LMFastConfig = config

    def train(self, data: Any = None, **request: Any) -> FineTuneResult:
        """Train on `data` (a path, artifact id or `datasets` object); prints nothing."""
        config = self.config
        dataset = None
        if isinstance(data, str):
            config = config.model_copy(
                update={"data": config.data.model_copy(update={"path": data})}
            )
        elif data is not None:
            dataset = data
        return fine_tune(FineTuneRequest(config=config, **request), dataset=dataset)
