"""A GRPO reward of your own: one float (or None) per completion.

Train with it: lmfast train -d sums.jsonl --reward docs_src/grpo_reward.py:concise
"""

from __future__ import annotations

from typing import Any

from lmfast.config import GRPOSettings
from lmfast.training.rewards import load_rewards


def concise(
    completions: list[str], prompts: list[str], answer: list[str], **_: Any
) -> list[float | None]:
    """1 for the right answer in ten words or fewer, 0.5 for it at length, else 0."""
    scores: list[float | None] = []
    for text, expected in zip(completions, answer, strict=True):
        if expected not in text:
            scores.append(0.0)
        else:
            scores.append(1.0 if len(text.split()) <= 10 else 0.5)
    return scores


if __name__ == "__main__":
    # As training calls it: wrapped, so a failure names the reward and the completion.
    [reward] = load_rewards(GRPOSettings(rewards=[f"{__file__}:concise"]))
    said = ["20", "Thirteen plus seven makes 20 in all, as counting on your fingers shows."]
    print(reward(prompts=["What is 13 + 7?"] * 2, completions=said, answer=["20", "20"]))
