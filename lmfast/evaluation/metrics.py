"""Scoring rules: answer extraction, exact match / F1 (SQuAD normalisation), BLEU (sacrebleu),
ROUGE (rouge-score), multiple-choice accuracy and calibration, perplexity."""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def extract(text: str, rule: str, pattern: str | None = None) -> str:
    """The answer inside a model's output (or a reference) under one extraction rule.

    strip: the whole text, trimmed. first_line: the first non-empty line. last_number: the
    last number (GSM8K's convention; thousands separators dropped). regex: group 1 of the
    first match, or the whole match when the pattern has no group. No match gives "".
    """
    if rule == "strip":
        return text.strip()
    if rule == "first_line":
        for line in text.strip().splitlines():
            if line.strip():
                return line.strip()
        return ""
    if rule == "last_number":
        found = _NUMBER.findall(text)
        if not found:
            return ""
        number = found[-1].replace(",", "")
        return number[:-2] if number.endswith(".0") else number
    if rule == "regex":
        if pattern is None:
            raise ValueError("extraction=regex needs a pattern")
        m = re.search(pattern, text, flags=re.DOTALL)
        if m is None:
            return ""
        return (m.group(1) if m.groups() else m.group(0)).strip()
    raise ValueError(f"unknown extraction rule {rule!r}")


def normalize(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize(prediction) == normalize(reference))


def f1(prediction: str, reference: str) -> float:
    """Token-overlap F1 between normalised answers (SQuAD)."""
    pred, ref = normalize(prediction).split(), normalize(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (sacrebleu's default 13a tokenisation), 0-100."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)


def rouge(predictions: Sequence[str], references: Sequence[str], kind: str) -> list[float]:
    """Per-example ROUGE F-measure (rouge1, rouge2 or rougeL), with stemming, 0-1."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer([kind], use_stemmer=True)
    return [
        scorer.score(ref, pred)[kind].fmeasure
        for pred, ref in zip(predictions, references, strict=True)
    ]


def softmax(values: Sequence[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def mean_and_stderr(values: Sequence[float]) -> tuple[float, float]:
    """Mean and its standard error (sample standard deviation / sqrt(n))."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def calibration_bins(
    confidences: Sequence[float], correct: Sequence[bool], bins: int = 10
) -> tuple[list[tuple[float, float, int]], float]:
    """Reliability diagram data: (mean confidence, accuracy, count) per non-empty bin, and the
    expected calibration error (ECE)."""
    grouped: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for c, ok in zip(confidences, correct, strict=True):
        grouped[min(int(c * bins), bins - 1)].append((c, ok))
    rows, ece, n = [], 0.0, len(confidences)
    for group in grouped:
        if not group:
            continue
        conf = sum(c for c, _ in group) / len(group)
        acc = sum(ok for _, ok in group) / len(group)
        rows.append((conf, acc, len(group)))
        ece += len(group) / n * abs(conf - acc)
    return rows, ece
