"""Greedy generation from a model being trained (sample answers, learning benchmark)."""

from __future__ import annotations

from typing import Any


def greedy_answers(
    model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int = 64
) -> list[str]:
    """One greedy answer per prompt, rendered with the chat template when there is one."""
    import torch

    was_training = model.training
    model.eval()
    answers = []
    try:
        for prompt in prompts:
            if tokenizer.chat_template:
                text = tokenizer.apply_chat_template(
                    [{"role": "user", "content": prompt}],
                    tokenize=False,
                    add_generation_prompt=True,
                )
            else:
                text = prompt
            ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
            ids = {k: v.to(model.device) for k, v in ids.items()}
            with torch.no_grad():
                out = model.generate(
                    **ids,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
                    use_cache=True,
                )
            new = out[0, ids["input_ids"].shape[1] :]
            answers.append(tokenizer.decode(new, skip_special_tokens=True).strip())
    finally:
        if was_training:
            model.train()
    return answers
