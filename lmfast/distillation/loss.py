"""Distillation losses on the labelled positions only.

loss = (1 - alpha) x CE(student, labels) + alpha x T^2 x KL(teacher_T || student_T), where
x_T is the softmax of logits / T (Hinton et al., 2015: the T^2 keeps the soft term's gradient
scale independent of T). Both terms are sums over positions; the caller divides by the label
count, like the cross-entropy fine_tune trains with.

Offline, only the teacher's top-k log-probabilities are stored. The teacher distribution is
then renormalised over those k tokens (p_k = softmax(logprob_k / T)) and compared with the
student's full-vocabulary log-probabilities at the same ids. The term stays >= 0 (the
student's k probabilities sum to at most 1) and is 0 only when the student puts exactly the
teacher's renormalised mass on those tokens; mass the teacher spreads over the other tokens
(`coverage` < 1) is what the approximation drops.
"""

from __future__ import annotations

from typing import Any


def kl_full(student_logits: Any, teacher_logits: Any, temperature: float) -> Any:
    """Sum over positions of KL(teacher_T || student_T), full vocabulary."""
    import torch.nn.functional as F

    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    return (t.exp() * (t - s)).sum()


def kl_topk(
    student_logits: Any, teacher_ids: Any, teacher_logprobs: Any, temperature: float
) -> Any:
    """Sum over positions of KL(renormalised teacher top-k _T || student_T) at the k ids."""
    import torch.nn.functional as F

    t = F.log_softmax(teacher_logprobs.float() / temperature, dim=-1)
    s = F.log_softmax(student_logits.float() / temperature, dim=-1).gather(-1, teacher_ids.long())
    return (t.exp() * (t - s)).sum()


def distillation_sums(
    student_logits: Any,
    targets: Any,
    teacher: tuple[Any, ...],
    alpha: float,
    temperature: float,
) -> tuple[Any, Any, Any]:
    """(weighted loss sum, cross-entropy sum, KL sum) over the given positions. `teacher` is
    (logits,) online or (top-k ids, top-k log-probs) offline."""
    import torch.nn.functional as F

    ce = F.cross_entropy(student_logits.float(), targets, reduction="sum")
    if len(teacher) == 1:
        kl = kl_full(student_logits, teacher[0], temperature)
    else:
        kl = kl_topk(student_logits, teacher[0], teacher[1], temperature)
    total = (1 - alpha) * ce + alpha * temperature**2 * kl
    return total, ce.detach(), kl.detach()
