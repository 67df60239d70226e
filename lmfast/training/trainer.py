"""transformers' Trainer with two changes LMFast needs.

The loss comes from the LM head at labelled positions only (lmfast.training.loss), and a
checkpoint write that fills the disk stops with a clear error while the previous checkpoint
stays intact. Imported only when training starts: transformers is heavy.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path
from typing import Any

from transformers import Trainer

from lmfast.errors import LMFastError
from lmfast.training.loss import masked_lm_loss


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


class LMFastTrainer(Trainer):
    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        loss = masked_lm_loss(model, inputs, num_items_in_batch)
        if loss is None:  # an architecture the fast path does not cover
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        return (loss, {}) if return_outputs else loss

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        out = Path(self.args.output_dir)
        step = self.state.global_step
        try:
            super()._save_checkpoint(model, trial)
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            shutil.rmtree(out / f"checkpoint-{step}", ignore_errors=True)
            previous = sorted(out.glob("checkpoint-*"))
            need = _folder_bytes(previous[-1]) if previous else 0
            raise LMFastError(
                f"disk full while writing checkpoint {step} in {out}: about "
                f"{need / 2**20:.0f} MB are needed per checkpoint. The previous checkpoint is "
                "intact; free space and run the same command to resume."
            ) from None
