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


def greedy_batch(
    model: Any, tokenizer: Any, texts: list[str], max_new_tokens: int, batch_size: int = 16
) -> list[tuple[str, list[int]]]:
    """Greedy continuations of already-rendered prompts, `batch_size` at a time (left
    padding): (text without special tokens, token ids up to the end token)."""
    import torch

    was_training = model.training
    model.eval()
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    answers: list[tuple[str, list[int]]] = []
    ends = {tokenizer.eos_token_id, pad}
    try:
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            ids = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            ids = {k: v.to(model.device) for k, v in ids.items()}
            with torch.no_grad():
                out = model.generate(
                    **ids,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=pad,
                    use_cache=True,
                )
            for row in out[:, ids["input_ids"].shape[1] :].tolist():
                end = next((i + 1 for i, t in enumerate(row) if t in ends), len(row))
                text = tokenizer.decode(row[:end], skip_special_tokens=True).strip()
                answers.append((text, row[:end]))
    finally:
        tokenizer.padding_side = side
        if was_training:
            model.train()
    return answers
