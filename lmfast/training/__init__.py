"""Training: LoRA / QLoRA / full fine-tuning, continued pretraining and pretraining from
scratch, on one process or several, resumable and tracked.

`fine_tune(FineTuneRequest)` is the capability; `SLMTrainer(config).train(data)` is the
one-line notebook entry; `merge_adapter` folds an adapter into a full model artifact;
`train_tokenizer` makes tokenizers for new models; `tune` searches recipes with Optuna.
"""

from __future__ import annotations

from typing import Any

from lmfast.training.finetune import FineTuneRequest, FineTuneResult, fine_tune
from lmfast.training.launch import LaunchSettings
from lmfast.training.merge import MergeRequest, MergeResult, merge_adapter
from lmfast.training.tokenizer import TokenizerTrainRequest, TokenizerTrainResult, train_tokenizer
from lmfast.training.tune import TuneRequest, TuneResult, tune

__all__ = [
    "FineTuneRequest",
    "FineTuneResult",
    "LaunchSettings",
    "MergeRequest",
    "MergeResult",
    "SLMTrainer",
    "TokenizerTrainRequest",
    "TokenizerTrainResult",
    "TuneRequest",
    "TuneResult",
    "fine_tune",
    "merge_adapter",
    "train_tokenizer",
    "tune",
]


class SLMTrainer:
    """Notebook entry: `SLMTrainer(config).train("data.jsonl")` (or a `datasets` object)."""

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        from lmfast.config import LMFastConfig, load_config

        if config is None or isinstance(config, (str, bytes)) or hasattr(config, "__fspath__"):
            values = {k.replace("__", "."): v for k, v in overrides.items()}
            config = load_config(config, values=values)
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
