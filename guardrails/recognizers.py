"""Presidio recognizers LMFast replaces or adds, and the rules that keep findings whole.

- IP addresses: Presidio's pattern stops inside compressed IPv6 forms ("2001:db8:85a3::"
  of "2001:db8:85a3::8a2e:370:7334"), so redacting it leaked the address's tail. Candidates
  here are whole runs of address characters, validated by Python's `ipaddress`.
- IBANs: Presidio's grouped patterns miss valid numbers of some countries (a Spanish IBAN in
  4-character groups). Here any country code of the IBAN registry, its exact length and the
  ISO 7064 mod-97 check decide.
- Cards: Presidio's pattern plus the numbers it misses (Luhn still decides).
- `whole`: no finding ever ends or starts inside a word or number, whatever recognized it.
- `common_word_entity`: person and location findings made only of common lowercase words
  ("Batch", "Link", "Nine Sharp") are dropped.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from pathlib import Path
from typing import Any

# Length of the IBAN per country (IBAN registry, SWIFT, 2024), SEPA countries included.
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip

# A country code, check digits, then up to 30 letters or digits in groups of any size.
_IBAN_CANDIDATE = re.compile(r"\b([A-Z]{2})(\d{2})((?:[ -]?[A-Z0-9]){10,30})", re.IGNORECASE)
# Runs of characters an IP address is written with; the validator decides.
_IPV6_CANDIDATE = re.compile(r"(?<![\w:.])[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*(?:%[\w.]+)?(?![\w:])")
_IPV4_CANDIDATE = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w.]*\d)")
# What a pattern entity may continue with: a finding that stops before one of these
# characters (or starts after one) is extended to the whole token.
_TOKEN_CHAR = re.compile(r"[\w:%@+\-/]")

COMMON_WORDS_FILE = Path(__file__).with_name("data") / "common_words.txt"
_NER_WORDS = {"PERSON", "LOCATION", "ORGANIZATION", "NRP"}


def iban_valid(text: str) -> bool:
    """An IBAN, spaces and dashes allowed: known country, its length, mod-97 check."""
    compact = re.sub(r"[ -]", "", text).upper()
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum():
        return False
    digits = "".join(str(int(c, 36)) for c in compact[4:] + compact[:4])
    return int(digits) % 97 == 1


def find_ibans(text: str) -> list[tuple[int, int]]:
    """Spans of valid IBANs: each candidate is cut at its country's length, so a number or
    word after the IBAN ("... 1332 2 days") does not spoil it."""
    spans = []
    for m in _IBAN_CANDIDATE.finditer(text):
        length = IBAN_LENGTHS.get(m.group(1).upper())
        if length is None:
            continue
        seen, end = 4, m.end(2)
        for i in range(m.start(3), m.end(3)):
            if text[i].isalnum():
                seen += 1
                if seen == length:
                    end = i + 1
                    break
        whole_token = end >= len(text) or not text[end].isalnum()
        if seen == length and whole_token and iban_valid(text[m.start() : end]):
            spans.append((m.start(), end))
    return spans


def find_ips(text: str) -> list[tuple[int, int]]:
    spans = []
    for pattern in (_IPV6_CANDIDATE, _IPV4_CANDIDATE):
        for m in pattern.finditer(text):
            value = m.group(0).rstrip(".:")
            if not any(c.isdigit() for c in value):  # "a::b" is valid, but it is not an address
                continue
            try:
                ipaddress.ip_address(value.split("%", 1)[0])
            except ValueError:
                continue
            spans.append((m.start(), m.start() + len(value)))
    return spans


def _span_recognizer(entity: str, name: str, finder: Any, score: float, context: list[str]) -> Any:
    from presidio_analyzer import EntityRecognizer, RecognizerResult

    class SpanRecognizer(EntityRecognizer):  # type: ignore[misc]
        def load(self) -> None:
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            return [RecognizerResult(entity, s, e, score) for s, e in finder(text)]

    return SpanRecognizer(supported_entities=[entity], name=name, context=context)


def ip_recognizer() -> Any:
    return _span_recognizer("IP_ADDRESS", "LMFastIpRecognizer", find_ips, 0.6, ["ip", "ipv6"])


def iban_recognizer() -> Any:
    return _span_recognizer("IBAN_CODE", "LMFastIbanRecognizer", find_ibans, 1.0, ["iban"])


def card_recognizer() -> Any:
    """Presidio's card recognizer plus the numbers its pattern misses: Mastercard's 2-series,
    19-digit Visa, 12-19 digit Maestro and 15-digit JCB. The Luhn check still decides."""
    from presidio_analyzer import Pattern
    from presidio_analyzer.predefined_recognizers import CreditCardRecognizer

    extra = [
        Pattern("card, 4-digit groups", r"\b\d{4}(?:[- ]?\d{4}){2}[- ]?\d{1,7}\b", 0.3),
        Pattern("card, contiguous", r"\b\d{12,19}\b", 0.3),
    ]
    return CreditCardRecognizer(patterns=[*CreditCardRecognizer.PATTERNS, *extra])


def whole(text: str, start: int, end: int) -> tuple[int, int]:
    """The span grown to whole tokens: a recognizer that matched part of an address or a
    number must not leave the rest in clear text."""
    while start > 0 and _TOKEN_CHAR.match(text[start - 1]) and text[start - 1] not in "-/":
        start -= 1
    while end < len(text) and _TOKEN_CHAR.match(text[end]):
        end += 1
    # A token running into trailing punctuation keeps the punctuation out.
    while end > start + 1 and text[end - 1] in ":-/":
        end -= 1
    return start, end


@functools.cache
def common_words() -> frozenset[str]:
    lines = COMMON_WORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(w for w in lines if w and not w.startswith("#"))


_TITLE = re.compile(r"\b(mr|mrs|ms|miss|dr|prof|sir|madam|dear)\.?\s*$", re.IGNORECASE)


def common_word_entity(text: str, entity: str, start: int, end: int) -> bool:
    """A NER finding made only of common lowercase words, with no title before it: "Bill
    the client", "Standup Starts at Nine Sharp". Names ("Mary", "Lopez") are not common
    lowercase words, so they stay; a one-word name that is also a word ("Will") after a
    title ("Dr. Will") stays too."""
    if entity not in _NER_WORDS:
        return False
    words = re.findall(r"[A-Za-z]+", text[start:end])
    if not words or _TITLE.search(text[:start]):
        return False
    # Short words decide nothing: "Ana" is a name, "of" joins two words.
    common = common_words()
    long_words = [w for w in words if len(w) > 2]
    return bool(long_words) and all(len(w) >= 4 and w.lower() in common for w in long_words)


# Short capitalised words that start sentences and are never names on their own.
_FUNCTION_WORDS_TEXT = (
    "i a an as at be by do go he if in is it me my no of oh ok on or so to up us we "
    "the and but for not you can how why who its our her his she are was has had did let "
    "yes any all few two one six ten now get put use try see set add run new old out off "
    "yet nor per via too own may"
)
_FUNCTION_WORDS = frozenset(_FUNCTION_WORDS_TEXT.split())
_WORD = re.compile(r"[^\W\d_][\w'-]*")


def may_name_someone(text: str) -> bool:
    """Whether `text` has a capitalised word that could be a name or place: not a common
    lowercase word of 4+ letters, nor a short function word. The NER model is only run on
    such texts; "Here are a few ideas. Book two months ahead." needs none."""
    common = common_words()
    for m in _WORD.finditer(text):
        word = re.split("['\u2019]", m.group(0))[0]  # "I'm", "John's": the word before
        if not word or not word[0].isupper():
            continue
        low = word.lower()
        if low in _FUNCTION_WORDS and low != "may":
            continue
        if len(word) >= 4 and low in common:
            continue
        return True
    return False


def _generate_common_words() -> None:  # pragma: no cover - maintenance
    """Rebuild data/common_words.txt from the embedded model's tokenizer vocabulary."""
    from gguf import GGUFReader

    from lmfast.registry import ALIASES, embedded_gguf

    reader = GGUFReader(embedded_gguf(ALIASES["smollm2-135m-instruct"]))
    field = reader.fields["tokenizer.ggml.tokens"]
    rank = {bytes(field.parts[i]).decode("utf-8", "replace"): n for n, i in enumerate(field.data)}
    words = sorted(
        t[1:]
        for t, n in rank.items()
        if t.startswith("Ġ") and t[1:].isascii() and t[1:].isalpha() and t[1:].islower()
        and len(t) >= 4 and n < rank.get("Ġ" + t[1:].capitalize(), len(rank))
    )  # fmt: skip
    header = [line for line in COMMON_WORDS_FILE.read_text().splitlines() if line.startswith("#")]
    COMMON_WORDS_FILE.write_text("\n".join([*header, *words]) + "\n")


if __name__ == "__main__":  # pragma: no cover
    _generate_common_words()
