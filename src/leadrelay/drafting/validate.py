"""Output validation for drafts, above all LLM drafts: every name, number, company or claim in
the text must rest on evidence, or the draft is rejected with the offending span and the
template draft is sent instead.

A model that writes "congrats on your 40% growth" to a lead who never said so costs trust the
first time and, for a claim of results, may break advertising law. Rejecting a good draft costs
only a plainer template message, so every rule below leans towards rejecting.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

TOO_LONG = "too_long"
MISSING_REQUIRED = "missing_required"
UNSUPPORTED_CLAIM = "unsupported_claim"

# Capitalized words that say nothing about the lead: greetings, sign-offs, the pronoun "I",
# honorifics (the name after them is still checked) and days of the week (scheduling words
# that the CTA usually carries anyway). Compared after casefolding.
COMMON_WORDS = frozenset(
    {
        "i",
        "i'm",
        "i'd",
        "i'll",
        "i've",
        "hi",
        "hello",
        "hey",
        "dear",
        "thanks",
        "thank",
        "best",
        "regards",
        "cheers",
        "sincerely",
        "warmly",
        "subject",
        "re",
        "ps",
        "p.s",
        "ok",
        "mr",
        "mrs",
        "ms",
        "mx",
        "dr",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    }
)

_URL = re.compile(r"(?:\bhttps?://|\bwww\.)[^\s<>\"')\]]+", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_DOMAIN = re.compile(
    r"(?<![\w@.-])(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,24}\b(?:/\S*)?", re.IGNORECASE
)
_PHONE = re.compile(r"(?<![\w+])\+?\(?\d[\d ().-]{5,}\d(?!\w)")
_NUMBER = re.compile(
    r"""
    (?<![\w.,])
    (?:[$€£¥]\s?|\#\s?)?              # money or rank
    \d(?:[\d,.:]*\d)?                 # digits with inner separators: 1,200 / 2.5 / 10:30
    (?:
        \s?%
      | \s?percent\b
      | \s?(?:million|billion|thousand|mn|bn)\b
      | [kmbx]\b                      # 5k, $5M, 3x
      | (?:st|nd|rd|th)\b             # ordinals
    )?
    """,
    re.IGNORECASE | re.VERBOSE,
)
# Claims of standing or results: they must be quoted from evidence (or allowed) to stand.
_CLAIM = re.compile(
    r"""
    \b(?:increas(?:e|es|ed|ing)|grow(?:s|ing)?|grew|boost(?:s|ed|ing)?|improv(?:e|es|ed|ing)
        |reduc(?:e|es|ed|ing)|cut(?:s|ting)?|sav(?:e|es|ed|ing)|doubl(?:e|es|ed|ing)
        |tripl(?:e|es|ed|ing)|lift(?:s|ed|ing)?|rais(?:e|es|ed|ing)|drove|driv(?:e|es|ing))
        (?:\s+[\w'’-]+){0,3}?\s+by\b
  | \bguarantee(?:s|d)?\b
  | \bno\.\s?1\b | \bnumber\s+one\b
  | \baward[-\s]winning\b | \bawards?\b
  | \b(?:trusted|used|loved|chosen|relied\s+on|backed)\s+by\b
  | \b(?:as\s+)?(?:seen|featured)\s+(?:in|on)\b
  | \b(?:industry|market)[-\s]lead(?:ing|er)\b | \bleading\b
  | \bworld[-\s]class\b | \bbest[-\s]in[-\s]class\b | \btop[-\s]rated\b
  | \b(?:the\s+)?(?:best|fastest|cheapest|largest|biggest|most\s+trusted|only)\s+
        (?:platform|tool|solution|provider|company|software|team|choice|way)\b
  | \bunmatched\b | \bunbeatable\b | \bproven\b | \brisk[-\s]free\b | \bcertified\b
  | \bROI\b | \breturn\s+on\s+investment\b
  | \b(?:clients|customers|companies|brands)\s+(?:like|such\s+as|including)\b
    """,
    re.IGNORECASE | re.VERBOSE,
)
# Typographic quotes and dashes, as models and mail clients write them, compare as ASCII.
_PUNCTUATION = str.maketrans("’‘“”–—", "''\"\"--")
_WORD = re.compile(r"[^\W\d_][\w'’.-]*")
_TRAILING = "'’.-"
_OPENERS = "\"'“‘([{«*"


@dataclass(frozen=True)
class Problem:
    """Why a draft is rejected; `text[start:end] == span` (empty for a missing element)."""

    kind: str
    detail: str
    start: int
    end: int
    span: str


def normalize(text: str) -> str:
    """Case-insensitive, whitespace-normalized form used for every comparison."""
    text = unicodedata.normalize("NFKC", text)
    text = text.translate(_PUNCTUATION)
    return " ".join(text.casefold().split())


def _present(needle: str, haystack: str) -> bool:
    """`needle` occurs in `haystack` as whole words (both already normalized)."""
    if not needle:
        return True
    before = r"(?<!\w)" if needle[0].isalnum() or needle[0] == "_" else ""
    after = r"(?!\w|[.,]\d)" if needle[-1].isalnum() or needle[-1] == "_" else ""
    return re.search(before + re.escape(needle) + after, haystack) is not None


def occurs_verbatim(element: str, text: str) -> bool:
    """`element` occurs as is, between word boundaries: present without normalizing."""
    at = text.find(element)
    while at >= 0:
        end = at + len(element)
        before_ok = at == 0 or not (text[at - 1].isalnum() and element[0].isalnum())
        after_ok = end == len(text) or not (text[end].isalnum() and element[-1].isalnum())
        if before_ok and after_ok:
            return True
        at = text.find(element, at + 1)
    return False


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _strip_url(text: str) -> str:
    core = re.sub(r"^(?:https?://)?(?:www\.)?", "", text, flags=re.IGNORECASE)
    return core.rstrip("/")


class _Evidence:
    def __init__(self, values: Iterable[str]) -> None:
        normalized = [normalize(v) for v in values if v and v.strip()]
        self.haystack = "\n".join(normalized)
        self.url_haystack = "\n".join(_strip_url(v) for v in " ".join(normalized).split())
        self.phone_digits = [d for d in (_digits(v) for v in normalized) if len(d) >= 7]

    def has(self, span: str) -> bool:
        return _present(normalize(span), self.haystack)

    def has_url(self, span: str) -> bool:
        core = normalize(_strip_url(span))
        return bool(core) and _present(core, self.url_haystack)

    def has_phone(self, span: str) -> bool:
        # Formats differ ("+1 415 555 0100" against "(415) 555-0100"): compare digits, allowing
        # a missing country code but nothing shorter than a local number.
        wanted = _digits(span)
        return any(
            digits == wanted or (len(wanted) >= 7 and digits.endswith(wanted))
            for digits in self.phone_digits
        )


def _trim(text: str, start: int, end: int, chars: str) -> int:
    while end > start and text[end - 1] in chars:
        end -= 1
    return end


def _sentence_start(text: str, start: int) -> bool:
    """Whether the word at `start` opens a sentence, a line, a bullet or the subject."""
    i = start - 1
    while i >= 0 and (text[i] in " \t" or text[i] in _OPENERS):
        i -= 1
    if i < 0 or text[i] in ".!?:;\n":
        return True
    if text[i] in "-•":
        j = i - 1
        while j >= 0 and text[j] in " \t":
            j -= 1
        return j < 0 or text[j] == "\n"
    return False


def _candidates(text: str) -> list[tuple[int, int, str]]:
    """(start, end, category) of every checkable span; earlier categories win overlaps."""
    found: list[tuple[int, int, str]] = []
    taken: list[tuple[int, int]] = []

    def add(start: int, end: int, category: str) -> None:
        if end <= start or any(start < e and s < end for s, e in taken):
            return
        taken.append((start, end))
        found.append((start, end, category))

    for match in _URL.finditer(text):
        add(match.start(), _trim(text, match.start(), match.end(), ".,;:!?'\""), "link")
    for match in _EMAIL.finditer(text):
        add(match.start(), _trim(text, match.start(), match.end(), "."), "e-mail address")
    for match in _DOMAIN.finditer(text):
        add(match.start(), _trim(text, match.start(), match.end(), ".,;:!?'\")"), "link")
    for match in _PHONE.finditer(text):
        end = _trim(text, match.start(), match.end(), " .-(")
        if len(_digits(text[match.start() : end])) >= 7:
            add(match.start(), end, "phone number")
    for match in _NUMBER.finditer(text):
        add(match.start(), match.end(), "number")
    for match in _CLAIM.finditer(text):
        add(match.start(), match.end(), "claim")
    for start, end in _name_runs(text, taken):
        add(start, end, "name")
    return sorted(found)


def _name_runs(text: str, taken: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Capitalized words, grouped into runs of words separated by single spaces or "&"."""
    words: list[tuple[int, int]] = []
    for match in _WORD.finditer(text):
        start, end = match.start(), _trim(text, match.start(), match.end(), _TRAILING)
        if any(start < e and s < end for s, e in taken):
            continue
        words.append((start, end))
    runs: list[list[tuple[int, int]]] = []
    current: list[tuple[int, int]] = []
    for start, end in words:
        word = text[start:end]
        capitalized = word[0].isupper()
        common = _bare(word) in COMMON_WORDS
        joined = bool(current) and re.fullmatch(r" | & ", text[current[-1][1] : start]) is not None
        if capitalized and not common:
            if current and not joined:
                runs.append(current)
                current = []
            current.append((start, end))
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [(run[0][0], run[-1][1]) for run in runs]


def _bare(word: str) -> str:
    word = normalize(word)
    return word[:-2] if word.endswith("'s") else word


def _check_name(text: str, start: int, end: int, evidence: _Evidence) -> list[tuple[int, int]]:
    """The unsupported parts of a run of capitalized words, as (start, end) spans."""
    if evidence.has(text[start:end]):
        return []
    words = [(m.start() + start, m.end() + start) for m in re.finditer(r"\S+", text[start:end])]
    words = [(s, e) for s, e in words if text[s:e] != "&"]
    unsupported = [not evidence.has(_bare(text[s:e])) for s, e in words]
    # A sentence's first word is capitalized for grammar, not because it names anyone: it is
    # only reported together with an unsupported word right after it.
    if _sentence_start(text, words[0][0]):
        unsupported[0] = unsupported[0] and len(words) > 1 and unsupported[1]
    spans: list[tuple[int, int]] = []
    for (s, e), bad in zip(words, unsupported, strict=True):
        if not bad:
            continue
        if spans and re.fullmatch(r" | & ", text[spans[-1][1] : s]):
            spans[-1] = (spans[-1][0], e)
        else:
            spans.append((s, e))
    return spans


def validate(
    text: str,
    *,
    channel: str,
    evidence_values: Mapping[str, str],
    allowed: Collection[str] = (),
    required: Collection[str] = (),
    max_length: int,
    facts: bool = True,
) -> list[Problem]:
    """Problems that reject `text` as a `channel` draft; an empty list means it may be used.

    - `too_long`: more than `max_length` characters; the span is the overflow.
    - `missing_required`: an element of `required` (the CTA sentence, the lead's first name…)
      does not occur in the text (case-insensitive, whitespace-normalized, whole words).
    - `unsupported_claim`: a span of one of the kinds below that occurs neither in a value of
      `evidence_values` nor in `allowed` (the sender's name and company, the CTA text, phrases
      the operator approved), compared case-insensitively with whitespace normalized and on
      whole words. Kinds, in order of precedence when they overlap:
        * links: `http(s)://…`, `www.…` and bare domains (`acme.com/pricing`), compared without
          scheme, `www.` and trailing slash, so a different path on the lead's own site fails;
        * e-mail addresses;
        * phone-like strings (7 or more digits with spaces, dots, dashes or brackets), compared
          by digits, a missing country code allowed;
        * numbers: any digits, with currency or `#` before and `%`, `percent`, `k`/`M`/`bn`,
          `million`, `x` or an ordinal after ("40%", "$5M", "3x", "2024", "10:30", "#1");
        * claims of standing or results: "increased revenue by", "guarantee", "No. 1", "number
          one", "award-winning", "trusted by", "as featured in", "industry-leading",
          "world-class", "the fastest platform", "proven", "ROI", "customers like"…;
        * names: runs of capitalized words (companies, people, titles such as "CEO", places,
          publications) joined by single spaces or "&". A run passes whole or word by word
          (first and last name from two fields); otherwise its unsupported words are reported.
          Words in `COMMON_WORDS` (greetings, "I", honorifics, days of the week) are skipped.
    `facts=False` checks length and required elements only: for a template draft, whose
    inserted values are evidence by construction and whose wording is the tenant's own.

    Known gaps, by design of a rule set without a dictionary: the first word of a sentence is
    not reported on its own (it is capitalized for grammar), so "Maria called." at a sentence
    start passes; lower-case names, numbers in words ("forty") and claims phrased outside the
    list above are not detected. The prompt forbids them; the template is the safe default.
    """
    problems: list[Problem] = []
    if len(text) > max_length:
        problems.append(
            Problem(
                TOO_LONG,
                f"{len(text)} characters; a {channel} draft may have at most {max_length}",
                max_length,
                len(text),
                text[max_length:],
            )
        )
    normalized_text: str | None = None
    for element in required:
        if not element or not element.strip() or occurs_verbatim(element, text):
            continue
        normalized_text = normalized_text or normalize(text)  # only when needed: NFKC is dear
        if not _present(normalize(element), normalized_text):
            problems.append(
                Problem(MISSING_REQUIRED, f"required element missing: {element!r}", 0, 0, "")
            )
    if not facts:
        return problems

    evidence = _Evidence(list(evidence_values.values()) + list(allowed))
    claims: list[Problem] = []
    for start, end, category in _candidates(text):
        span = text[start:end]
        if category == "name":
            for s, e in _check_name(text, start, end, evidence):
                claims.append(_unsupported(text, s, e, category))
            continue
        if category == "link":
            supported = evidence.has_url(span)
        elif category == "phone number":
            supported = evidence.has_phone(span)
        else:
            supported = evidence.has(span)
        if not supported:
            claims.append(_unsupported(text, start, end, category))
    problems.extend(sorted(claims, key=lambda p: p.start))
    return problems


def _unsupported(text: str, start: int, end: int, category: str) -> Problem:
    span = text[start:end]
    return Problem(UNSUPPORTED_CLAIM, f"{category} not in the evidence: {span!r}", start, end, span)
