"""Pair scoring for deduplication: Fellegi–Sunter with hand-set weights, so that every decision
can be explained field by field to the person reviewing it.

Each field of a pair is compared by a `FieldComparator` into a `Level` (agree, partial, differ,
disagree, missing). Each level carries a weight, log2(m/u), where m is the share of true
duplicates expected at that level and u the share of unrelated pairs: the weights are written as
those two guesses (`Weights.from_probabilities`), never fitted to labelled data. The score of a
pair is the sum of its weights: **log2 of the likelihood ratio, in bits of evidence** (0 = the
fields say nothing; +10 ≈ 1,000 times likelier under "same entity"; missing fields weigh 0). At
or above `MatchConfig.high` the pair is merged automatically, from `low` up to `high` it goes to
a reviewer, below `low` the records are kept apart. `PairScore.contributions` is the
explanation: one (field, level, weight) line per field.

Fields that describe one thing share a `group` (a lead's phone, company, domain, city and
website all describe the organisation): their disagreements all count, but only their strongest
agreement does, because Fellegi–Sunter assumes independent fields and colleagues agree on all of
them at once.

Everything here is pure and deterministic: no clock, no I/O, no randomness. Blocking here is
in memory, for quality runs and small batches; the production path blocks in PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import math
import re
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache, lru_cache
from itertools import combinations
from typing import NamedTuple, TypeVar
from uuid import UUID

from publicsuffixlist import PublicSuffixList
from rapidfuzz import fuzz
from rapidfuzz.distance import OSA, JaroWinkler
from typing_extensions import override
from unidecode import unidecode

Record = Mapping[str, str | None]
# Ids need an order for deterministic pairs, clusters and survivors.
RecordId = TypeVar("RecordId", str, int, UUID)

_CACHE_SIZE = 1 << 16


class Level(StrEnum):
    AGREE = "agree"
    PARTIAL = "partial"  # a near miss: a typo, an initial, another spelling
    DIFFER = "differ"  # different, in a way common among duplicates (a private vs a work address)
    DISAGREE = "disagree"
    MISSING = "missing"  # absent or unusable on either side: weighs nothing


class Decision(StrEnum):
    MERGE = "merge"
    REVIEW = "review"
    DISTINCT = "distinct"


# --- light cleaning (independent of capture.normalize, which prepares stored values) -------------

_NON_ALNUM = re.compile(r"[^0-9a-z]+")
_APOSTROPHES = re.compile(r"['’`]")
_NON_DIGIT = re.compile(r"\D+")


_UMLAUT_SPELLINGS = re.compile(r"(?<=[a-z])([aou])e")


@lru_cache(maxsize=_CACHE_SIZE)
def _clean(value: str) -> str:
    """ASCII-folded, lower case, every run of punctuation or space turned into one space."""
    folded = _APOSTROPHES.sub("", unidecode(value).lower())
    return _NON_ALNUM.sub(" ", folded).strip()


def _fold_umlauts(text: str) -> str:
    """ae/oe/ue after a letter read as a/o/u, so that Müller, Mueller and Muller are one
    spelling. Only for equality: on typos it would blur more than it helps."""
    return _UMLAUT_SPELLINGS.sub(r"\1", text)


def _split(text: str, separator: str | None = None) -> tuple[str, ...]:
    return tuple(text.split(separator))


def _join_initials(tokens: Sequence[str]) -> list[str]:
    """Dotted abbreviations become one token: "l l c" → "llc", "i b m" → "ibm"."""
    joined: list[str] = []
    run: list[str] = []
    for token in [*tokens, ""]:
        if len(token) == 1 and token.isalpha():
            run.append(token)
            continue
        if len(run) > 1:
            joined.append("".join(run))
        else:
            joined.extend(run)
        run = []
        if token:
            joined.append(token)
    return joined


_SOUNDEX_CODES = {
    letter: digit
    for digit, letters in (
        ("1", "bfpv"),
        ("2", "cgjkqsxz"),
        ("3", "dt"),
        ("4", "l"),
        ("5", "mn"),
        ("6", "r"),
    )
    for letter in letters
}


@lru_cache(maxsize=_CACHE_SIZE)
def soundex(word: str) -> str:
    """American Soundex of the letters of `word` ("" when it has none): Robert → R163."""
    letters = [c for c in _clean(word) if "a" <= c <= "z"]
    if not letters:
        return ""
    code = [letters[0].upper()]
    previous = _SOUNDEX_CODES.get(letters[0], "")
    for letter in letters[1:]:
        digit = _SOUNDEX_CODES.get(letter, "")
        if digit and digit != previous:
            code.append(digit)
            if len(code) == 4:
                break
        if letter not in "hw":
            previous = digit
    return "".join(code).ljust(4, "0")


# --- comparators ----------------------------------------------------------------------------------


class FieldComparator(ABC):
    """Compares two present (non-blank) values of one field. Must be symmetric; may answer
    `Level.MISSING` when a value is present but unusable (an e-mail without "@")."""

    kind: str

    @abstractmethod
    def compare(self, a: str, b: str) -> Level: ...


class ExactComparator(FieldComparator):
    """Equal ignoring case and spacing; there is no partial level."""

    kind = "exact"

    @override
    def compare(self, a: str, b: str) -> Level:
        return Level.AGREE if _casefold_spaces(a) == _casefold_spaces(b) else Level.DISAGREE


@lru_cache(maxsize=_CACHE_SIZE)
def _casefold_spaces(value: str) -> str:
    return " ".join(value.casefold().split())


# Common English diminutives → the given name they stand for. Deliberately short: a nickname
# the table lacks still reaches `partial` when it shares the name's first letters (Rob/Robert).
_NICKNAMES: dict[str, str] = {
    nickname: name
    for name, nicknames in {
        "robert": "bob bobby rob robbie bert",
        "william": "bill billy will willy liam",
        "richard": "dick rick ricky rich",
        "james": "jim jimmy jamie",
        "john": "jack johnny jon",
        "michael": "mike mikey mick",
        "elizabeth": "liz lizzy beth betty eliza betsy",
        "katherine": "kate kathy katie kat catherine kathryn",
        "margaret": "maggie meg peggy marge",
        "jennifer": "jen jenny",
        "christopher": "chris kit",
        "daniel": "dan danny",
        "matthew": "matt",
        "anthony": "tony",
        "joseph": "joe joey",
        "thomas": "tom tommy",
        "charles": "charlie chuck chas",
        "edward": "ed eddie ted ned",
        "patricia": "pat patty trish",
        "alexander": "alex sandy",
        "alexandra": "alex sandra",
        "andrew": "andy drew",
        "benjamin": "ben benny",
        "samuel": "sam sammy",
        "samantha": "sam",
        "nicholas": "nick nicky",
        "steven": "steve stephen",
        "susan": "sue susie",
        "deborah": "debbie deb",
        "rebecca": "becky becca",
        "jessica": "jess jessie",
        "victoria": "vicky tori",
        "timothy": "tim timmy",
        "jonathan": "jonny",
        "gregory": "greg",
        "kenneth": "ken kenny",
        "ronald": "ron ronnie",
        "donald": "don donnie",
        "lawrence": "larry",
        "frederick": "fred freddie",
        "peter": "pete",
        "abigail": "abby",
        "david": "dave davey",
        "joshua": "josh",
        "zachary": "zach zack",
        "nathaniel": "nate nathan",
        "vincent": "vince",
        "phillip": "phil philip",
        "raymond": "ray",
        "gerald": "gerry jerry",
        "barbara": "barb babs",
        "cynthia": "cindy",
        "pamela": "pam",
        "theodore": "theo",
        "suzanne": "suzy",
        "christine": "chris chrissy christina",
        "jacqueline": "jackie",
        "veronica": "ronnie",
    }.items()
    for nickname in nicknames.split()
}


@dataclass(frozen=True, slots=True)
class _NameParts:
    tokens: tuple[str, ...]  # cleaned, nicknames replaced by the name, in written order
    sorted_tokens: tuple[str, ...]
    compact: str
    words: tuple[str, ...]  # sorted, without initials
    initials: frozenset[str]
    folded: str  # sorted, umlaut spellings folded


@lru_cache(maxsize=_CACHE_SIZE)
def _name_parts(value: str, nicknames: bool) -> _NameParts:
    tokens = tuple(_NICKNAMES.get(t, t) if nicknames else t for t in _clean(value).split())
    ordered = tuple(sorted(tokens))
    words = tuple(t for t in ordered if len(t) > 1)
    initials = frozenset(t for t in ordered if len(t) == 1)
    folded = _fold_umlauts(" ".join(ordered))
    return _NameParts(tokens, ordered, "".join(tokens), words, initials, folded)


_similar = JaroWinkler.normalized_similarity


def _is_initial_of(a: str, b: str) -> bool:
    return (len(a) == 1 and b.startswith(a)) or (len(b) == 1 and a.startswith(b))


def _tokens_compatible(short: tuple[str, ...], long: tuple[str, ...], similarity: float) -> bool:
    """Every token of `short` finds its own token in `long`: equal, else a typo of it
    (Jaro–Winkler ≥ `similarity`), else an initial of it; whole words are paired before
    initials, and at least one pair must be whole words."""
    rest = list(long)
    words: list[str] = []
    initials: list[str] = []
    whole_words = 0
    for token in short:
        if token in rest:
            rest.remove(token)
            whole_words += len(token) > 1
        elif len(token) > 1:
            words.append(token)
        else:
            initials.append(token)
    for token in words:
        best, best_score = "", 0.0
        for candidate in rest:
            if len(candidate) > 1:
                score = _similar(token, candidate, score_cutoff=similarity)
                if score > best_score:
                    best, best_score = candidate, score
        if best:
            rest.remove(best)
            whole_words += 1
        else:
            initials.append(token)  # may still be the word behind an initial on the other side
    if not whole_words:
        return False
    for token in initials:
        match = next((c for c in rest if _is_initial_of(token, c)), None)
        if match is None:
            return False
        rest.remove(match)
    return True


class NameComparator(FieldComparator):
    """Person names, whole or in parts. `agree`: the same words in any order (nicknames mapped
    to their name: Bob → Robert), with or without a middle initial when two words or more agree
    (Robert J. Smith / Smith, Robert), or the same letters ignoring spaces (Mary-Ann / Maryann).
    `partial`: every word of one name finds a counterpart in the other that is equal, an initial
    (R. Smith) or a typo (Jaro–Winkler ≥ 0.88: Jhon, Smyth), so dropped middle names count too.
    Anything else disagrees: John and Joan are different people more often than a typo."""

    kind = "name"

    def __init__(self, *, nicknames: bool = True, typo_similarity: float = 0.88) -> None:
        self.nicknames = nicknames
        self.typo_similarity = typo_similarity

    @override
    def compare(self, a: str, b: str) -> Level:
        pa, pb = _name_parts(a, self.nicknames), _name_parts(b, self.nicknames)
        if not pa.tokens or not pb.tokens:
            return Level.MISSING
        if (
            pa.sorted_tokens == pb.sorted_tokens
            or pa.compact == pb.compact
            or pa.folded == pb.folded
        ):
            return Level.AGREE
        if (
            len(pa.words) >= 2
            and pa.words == pb.words
            and (pa.initials <= pb.initials or pb.initials <= pa.initials)
        ):
            return Level.AGREE
        if len(pa.tokens) == len(pb.tokens) == 1:
            ta, tb = pa.tokens[0], pb.tokens[0]
            is_typo = len(ta) > 1 and len(tb) > 1 and _similar(ta, tb) >= self.typo_similarity
            return Level.PARTIAL if is_typo else Level.DISAGREE
        short, long = sorted((pa.sorted_tokens, pb.sorted_tokens), key=lambda t: (len(t), t))
        if _tokens_compatible(short, long, self.typo_similarity) or (
            len(short) == len(long) and _tokens_compatible(long, short, self.typo_similarity)
        ):
            return Level.PARTIAL
        return Level.DISAGREE


_COMPANY_ABBREVIATIONS: dict[str, str] = {
    "intl": "international",
    "corp": "corporation",
    "co": "company",
    "inc": "incorporated",
    "ltd": "limited",
    "pvt": "private",
    "mfg": "manufacturing",
    "mfrs": "manufacturers",
    "svcs": "services",
    "svc": "services",
    "srvcs": "services",
    "tech": "technology",
    "technologies": "technology",
    "sys": "systems",
    "grp": "group",
    "assoc": "associates",
    "assocs": "associates",
    "bros": "brothers",
    "natl": "national",
    "mgmt": "management",
    "dev": "development",
    "engg": "engineering",
    "eng": "engineering",
    "inds": "industries",
    "ind": "industries",
    "hldgs": "holdings",
    "labs": "laboratories",
    "lab": "laboratories",
    "solns": "solutions",
    "mktg": "marketing",
    "comms": "communications",
    "univ": "university",
    "ctr": "center",
    "centre": "center",
    "pharma": "pharmaceuticals",
    "&": "and",
}

# Legal forms, stripped from the end of a name (repeatedly: "GmbH & Co. KG", "Pvt. Ltd.").
_LEGAL_SUFFIXES: tuple[tuple[str, ...], ...] = tuple(
    sorted(
        (
            tuple(suffix.split())
            for suffix in _split(
                "incorporated,corporation,company,limited,private limited,public limited company,"
                "limited liability company,limited liability partnership,llc,llp,lp,plc,gmbh,ag,"
                "kg,ohg,ug,sa,sas,sarl,srl,spa,bv,nv,oy,ab,pty,pty limited,pte limited,kk,and",
                ",",
            )
        ),
        key=len,
        reverse=True,
    )
)
_COMPANY_STOPWORDS = frozenset({"and", "of", "the", "for"})


@dataclass(frozen=True, slots=True)
class _CompanyParts:
    tokens: tuple[str, ...]  # the core name: abbreviations expanded, legal form stripped
    sorted_tokens: tuple[str, ...]
    compact: str
    initials: str  # "ibm" for International Business Machines
    folded: str  # sorted, without spaces, umlaut spellings folded


@lru_cache(maxsize=_CACHE_SIZE)
def _company_parts(value: str) -> _CompanyParts:
    text = _clean(value.replace("&", " and ").replace("+", " and "))
    tokens = [_COMPANY_ABBREVIATIONS.get(t, t) for t in _join_initials(text.split())]
    if tokens and tokens[0] == "the":
        tokens = tokens[1:]
    stripped = True
    while stripped:
        stripped = False
        for suffix in _LEGAL_SUFFIXES:
            if len(tokens) > len(suffix) and tuple(tokens[-len(suffix) :]) == suffix:
                tokens = tokens[: -len(suffix)]
                stripped = True
                break
    core = tuple(tokens)
    initials = "".join(t[0] for t in core if t not in _COMPANY_STOPWORDS)
    ordered = tuple(sorted(core))
    folded = _fold_umlauts("".join(ordered))
    return _CompanyParts(core, ordered, "".join(core), initials, folded)


def company_core(value: str) -> str:
    """The comparable core of a company name: "The Acme Intl. Corp." → "acme international"."""
    return " ".join(_company_parts(value).tokens)


class CompanyComparator(FieldComparator):
    """Company names after expanding abbreviations (Intl, Corp, Mfg, Svcs, &) and stripping
    legal forms (Inc, Ltd, Pvt Ltd, LLC, GmbH…). `agree`: the same words in any order, or the
    same letters ignoring spaces. `partial`: a typo (token-sort ratio ≥ 88), one name contained
    in the other or nearly (token-set ratio ≥ 90: Acme / Acme Widgets), or an acronym (IBM)."""

    kind = "company"

    @override
    def compare(self, a: str, b: str) -> Level:
        pa, pb = _company_parts(a), _company_parts(b)
        if not pa.tokens or not pb.tokens:
            return Level.MISSING
        if pa.sorted_tokens == pb.sorted_tokens or pa.compact == pb.compact:
            return Level.AGREE
        if pa.folded == pb.folded:
            return Level.AGREE
        sa, sb = " ".join(pa.sorted_tokens), " ".join(pb.sorted_tokens)
        if fuzz.ratio(sa, sb) >= 88 or fuzz.token_set_ratio(sa, sb) >= 90:
            return Level.PARTIAL
        for one, other in ((pa, pb), (pb, pa)):
            if len(one.tokens) == 1 and len(other.initials) > 1 and one.compact == other.initials:
                return Level.PARTIAL
        return Level.DISAGREE


@lru_cache(maxsize=_CACHE_SIZE)
def _phone_digits(value: str) -> str:
    return _NON_DIGIT.sub("", value)


class PhoneComparator(FieldComparator):
    """Digits only, compared on the last ten (so +1 415…, 001 415… and 415… agree, and so do
    +44 20… and 020…). `partial`: one digit wrong or two adjacent digits swapped. Fewer than
    seven digits is not a phone number: missing."""

    kind = "phone"

    @override
    def compare(self, a: str, b: str) -> Level:
        da, db = _phone_digits(a), _phone_digits(b)
        n = min(10, len(da), len(db))
        if n < 7:
            return Level.MISSING
        ta, tb = da[-n:], db[-n:]
        if ta == tb:
            return Level.AGREE
        if OSA.distance(ta, tb, score_cutoff=1) <= 1:
            return Level.PARTIAL
        return Level.DISAGREE


# Shared mailboxes: agreeing on one says little about the person behind the lead.
_ROLE_LOCAL_PARTS = frozenset(
    _split(
        "info sales contact contacts admin office hello support help enquiries enquiry "
        "inquiries marketing team hr jobs careers billing accounts accounting noreply no-reply "
        "mail webmaster service services orders press media"
    )
)
_GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
# A shared free-mail provider says nothing about an organisation.
_FREE_MAIL_DOMAINS = frozenset(
    _split(
        "gmail.com googlemail.com yahoo.com yahoo.co.uk yahoo.co.in hotmail.com hotmail.co.uk "
        "outlook.com live.com msn.com aol.com icloud.com me.com mac.com proton.me protonmail.com "
        "gmx.de gmx.net web.de mail.com yandex.ru qq.com 163.com rediffmail.com zoho.com"
    )
)
_EMAIL_NAME_SEPARATORS = re.compile(r"[._-]+")


@dataclass(frozen=True, slots=True)
class _Email:
    local: str
    domain: str
    compact: str  # the local part without . _ -
    is_role: bool
    variants: frozenset[str]  # name-shaped spellings of a first.last local part: jsmith, john…


@lru_cache(maxsize=_CACHE_SIZE)
def _email(value: str) -> _Email | None:
    local, at, domain = value.strip().lower().rpartition("@")
    domain = domain.strip(".")
    if not at or not local or "." not in domain:
        return None
    local = local.split("+", 1)[0]
    if domain in _GMAIL_DOMAINS:
        local, domain = local.replace(".", ""), "gmail.com"
    words = [w for w in _EMAIL_NAME_SEPARATORS.split(local) if w]
    variants: frozenset[str] = frozenset()
    if len(words) == 2 and all(w.isalpha() for w in words):
        first, last = words
        initials = (first[0] + last, first + last[0], last + first[0], last[0] + first)
        variants = frozenset((first, last, first + last, last + first, *initials))
    compact = "".join(words)
    return _Email(local, domain, compact, local in _ROLE_LOCAL_PARTS, variants)


class EmailComparator(FieldComparator):
    """`agree`: the same mailbox (case, +tags and Gmail dots ignored), unless it is a role
    mailbox (info@, sales@…): that only reaches `partial`. `partial` also: the same local part
    at work and at a free-mail provider (john.smith@acme.com / johnsmith@gmail.com), or
    name-shaped local parts at one domain (john.smith@ / jsmith@). `differ`: addresses at
    different domains or a role mailbox (people use a private and a work address; the same
    local part at two companies is as likely two namesakes as one person who moved).
    `disagree`: two unrelated mailboxes at the same organisation's domain: colleagues."""

    kind = "email"

    @override
    def compare(self, a: str, b: str) -> Level:
        ea, eb = _email(a), _email(b)
        if ea is None or eb is None:
            return Level.MISSING
        if ea.local == eb.local and ea.domain == eb.domain:
            return Level.PARTIAL if ea.is_role else Level.AGREE
        if ea.is_role or eb.is_role:
            return Level.DIFFER
        a_free, b_free = ea.domain in _FREE_MAIL_DOMAINS, eb.domain in _FREE_MAIL_DOMAINS
        if ea.compact == eb.compact and len(ea.compact) >= 5 and a_free != b_free:
            return Level.PARTIAL
        if ea.domain != eb.domain or a_free:
            return Level.DIFFER
        if ea.compact in eb.variants or eb.compact in ea.variants:
            return Level.PARTIAL
        return Level.DISAGREE


_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")


@cache
def _public_suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # bundled list: no network


@dataclass(frozen=True, slots=True)
class _Domain:
    registrable: str  # acme.co.uk
    brand: str  # acme


@lru_cache(maxsize=_CACHE_SIZE)
def _domain(value: str) -> _Domain | None:
    host = _SCHEME.sub("", value.strip().lower())
    host = re.split(r"[/?#:]", host.rpartition("@")[2], maxsplit=1)[0].strip(".")
    host = host.removeprefix("www.")
    if "." not in host or host in _FREE_MAIL_DOMAINS:
        return None
    registrable = _public_suffixes().privatesuffix(host) or host
    suffix = _public_suffixes().publicsuffix(registrable) or ""
    brand = registrable.removesuffix("." + suffix) if suffix else registrable
    return _Domain(registrable, brand)


class DomainComparator(FieldComparator):
    """Websites and domains, by registrable domain (https://www.shop.acme.com/x and acme.com
    agree). `partial`: the same name under another suffix (acme.com / acme.co.uk). Free-mail
    providers (gmail.com…) count as missing."""

    kind = "domain"

    @override
    def compare(self, a: str, b: str) -> Level:
        da, db = _domain(a), _domain(b)
        if da is None or db is None:
            return Level.MISSING
        if da.registrable == db.registrable:
            return Level.AGREE
        if da.brand == db.brand:
            return Level.PARTIAL
        return Level.DISAGREE


_ADDRESS_ABBREVIATIONS: dict[str, str] = {
    "st": "street",
    "str": "street",
    "rd": "road",
    "ave": "avenue",
    "av": "avenue",
    "dr": "drive",
    "ln": "lane",
    "ct": "court",
    "pl": "place",
    "cres": "crescent",
    "cr": "crescent",
    "hwy": "highway",
    "blvd": "boulevard",
    "pde": "parade",
    "tce": "terrace",
    "cct": "circuit",
    "cl": "close",
    "sq": "square",
    "pkwy": "parkway",
    "mt": "mount",
    "apt": "apartment",
    "ste": "suite",
    "fl": "floor",
}


@dataclass(frozen=True, slots=True)
class _Address:
    numbers: frozenset[str]
    sorted_words: str
    compact: str
    folded: str  # umlaut spellings folded


@lru_cache(maxsize=_CACHE_SIZE)
def _address(value: str) -> _Address:
    tokens = [_ADDRESS_ABBREVIATIONS.get(t, t) for t in _clean(value).split()]
    numbers = frozenset(t.lstrip("0") or "0" for t in tokens if t.isdigit())
    words = [t for t in tokens if not t.isdigit()]
    sorted_words = " ".join(sorted(words))
    return _Address(numbers, sorted_words, "".join(tokens), _fold_umlauts(sorted_words))


class AddressComparator(FieldComparator):
    """Street lines, suburbs and cities, after expanding St/Rd/Ave…. Numbers must agree when
    both sides have some. `agree`: the same words in any order or the same letters ignoring
    spaces (Pridham Street / pridhamstreet). `partial`: token-set ratio ≥ 85 (a typo)."""

    kind = "address"

    def __init__(self, *, partial_ratio: float = 85) -> None:
        self.partial_ratio = partial_ratio

    @override
    def compare(self, a: str, b: str) -> Level:
        pa, pb = _address(a), _address(b)
        if not pa.compact or not pb.compact:
            return Level.MISSING
        if pa.numbers and pb.numbers and pa.numbers != pb.numbers:
            return Level.DISAGREE
        if pa.sorted_words == pb.sorted_words or pa.compact == pb.compact or pa.folded == pb.folded:
            return Level.AGREE
        score = fuzz.token_set_ratio(pa.sorted_words, pb.sorted_words)
        return Level.PARTIAL if score >= self.partial_ratio else Level.DISAGREE


@lru_cache(maxsize=_CACHE_SIZE)
def _date_digits(value: str) -> str:
    """YYYYMMDD from 19810427, 1981-04-27 or 27/04/1981 (day first); other digits as written."""
    parts = [p for p in re.split(r"\D+", value.strip()) if p]
    if len(parts) == 3:
        if len(parts[0]) == 4:
            year, month, day = parts
        elif len(parts[2]) == 4:
            day, month, year = parts
        else:
            return "".join(parts)
        return f"{year}{month.zfill(2)}{day.zfill(2)}"
    return "".join(parts)


class DateComparator(FieldComparator):
    """Dates of birth and the like. `partial`: day and month swapped, one digit wrong, or two
    adjacent digits swapped."""

    kind = "date"

    @override
    def compare(self, a: str, b: str) -> Level:
        da, db = _date_digits(a), _date_digits(b)
        if not da or not db:
            return Level.MISSING
        if da == db:
            return Level.AGREE
        if (
            len(da) == len(db) == 8
            and da[:4] == db[:4]
            and (da[4:6], da[6:8]) == (db[6:8], db[4:6])
        ):
            return Level.PARTIAL
        if len(da) == len(db) and OSA.distance(da, db, score_cutoff=1) <= 1:
            return Level.PARTIAL
        return Level.DISAGREE


@lru_cache(maxsize=_CACHE_SIZE)
def _code(value: str) -> str:
    return _NON_ALNUM.sub("", value.lower())


class CodeComparator(FieldComparator):
    """Postcodes and identifiers: equal ignoring case, spaces and punctuation. `partial`: one
    edit (substitution, insertion, deletion or adjacent swap) when both have at least
    `partial_min_length` characters; on shorter codes one edit is another code."""

    kind = "code"

    def __init__(self, *, partial_min_length: int = 3) -> None:
        self.partial_min_length = partial_min_length

    @override
    def compare(self, a: str, b: str) -> Level:
        ca, cb = _code(a), _code(b)
        if not ca or not cb:
            return Level.MISSING
        if ca == cb:
            return Level.AGREE
        if (
            min(len(ca), len(cb)) >= self.partial_min_length
            and OSA.distance(ca, cb, score_cutoff=1) <= 1
        ):
            return Level.PARTIAL
        return Level.DISAGREE


# --- weights, configuration, scores -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Weights:
    """Bits of evidence per level; `missing` always weighs 0, and so does a level the
    comparator never returns."""

    agree: float
    disagree: float
    partial: float = 0.0
    differ: float = 0.0

    @classmethod
    def from_probabilities(
        cls,
        *,
        agree: tuple[float, float],
        partial: tuple[float, float] | None = None,
        differ: tuple[float, float] | None = None,
    ) -> Weights:
        """Each level as (m, u): its share among true duplicates and among unrelated pairs.
        `disagree` takes what the other levels leave of each."""
        levels = [level for level in (agree, partial, differ) if level is not None]
        m_rest = 1 - math.fsum(m for m, _ in levels)
        u_rest = 1 - math.fsum(u for _, u in levels)
        if min(m_rest, u_rest, *(p for level in levels for p in level)) <= 0:
            raise ValueError(f"probabilities out of range: {levels}")

        def bits(level: tuple[float, float] | None) -> float:
            return 0.0 if level is None else math.log2(level[0] / level[1])

        return cls(
            agree=bits(agree),
            disagree=math.log2(m_rest / u_rest),
            partial=bits(partial),
            differ=bits(differ),
        )

    def of(self, level: Level) -> float:
        return self.by_level()[level]

    def by_level(self) -> dict[Level, float]:
        return {
            Level.AGREE: self.agree,
            Level.PARTIAL: self.partial,
            Level.DIFFER: self.differ,
            Level.DISAGREE: self.disagree,
            Level.MISSING: 0.0,
        }


@dataclass(frozen=True, slots=True)
class MatchField:
    field: str
    comparator: FieldComparator
    weights: Weights
    group: str | None = None  # fields that describe one thing: only their best agreement counts
    # Fields read, in order, when `field` is empty (a domain taken from the website).
    fallbacks: tuple[str, ...] = ()

    def value(self, record: Record) -> str | None:
        for name in (self.field, *self.fallbacks):
            value = record.get(name)
            if value and not value.isspace():
                return value
        return None


@dataclass(frozen=True, slots=True)
class BlockingRule:
    """Records sharing any key of any rule become candidate pairs. `keys` returns the record's
    keys for this rule (none when the fields it needs are missing)."""

    name: str
    keys: Callable[[Record], Iterable[str]]


@dataclass(frozen=True, slots=True)
class MatchConfig:
    fields: tuple[MatchField, ...]
    high: float  # bits: merge at or above
    low: float  # bits: review at or above, keep apart below
    blocking: tuple[BlockingRule, ...] = ()
    # A block larger than this is not paired all-with-all: its records are sorted by their field
    # values and each is paired with the next `window - 1` (sorted neighbourhood).
    max_block_size: int = 60
    window: int = 12
    _weights: tuple[dict[Level, float], ...] = dataclasses.field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError("low threshold above high threshold")
        # Looked up once per field and pair: a dict beats four comparisons.
        object.__setattr__(self, "_weights", tuple(f.weights.by_level() for f in self.fields))

    def decide(self, score: float) -> Decision:
        if score >= self.high:
            return Decision.MERGE
        if score >= self.low:
            return Decision.REVIEW
        return Decision.DISTINCT


class Contribution(NamedTuple):
    """One line of a pair's explanation."""

    field: str
    level: Level
    weight: float  # what this field added to the score
    # Set when the field agreed but a stronger agreement in its group was counted instead.
    counted_in: str | None = None


@dataclass(frozen=True, slots=True)
class PairScore:
    score: float  # bits of evidence, log2 of the likelihood ratio (see the module docstring)
    decision: Decision
    contributions: tuple[Contribution, ...]


def _present(value: str | None) -> str | None:
    if not value or value.isspace():
        return None
    return value


def score_pair(a: Record, b: Record, config: MatchConfig) -> PairScore:
    """Score two records field by field. Symmetric: score_pair(a, b) == score_pair(b, a)."""
    contributions: list[Contribution] = []
    has_groups = False
    for match_field, weights in zip(config.fields, config._weights, strict=True):
        name = match_field.field
        if match_field.fallbacks:
            va, vb = match_field.value(a), match_field.value(b)
        else:
            va, vb = a.get(name), b.get(name)
        if not va or not vb or va.isspace() or vb.isspace():
            level = Level.MISSING
        else:
            level = match_field.comparator.compare(va, vb)
        contributions.append(Contribution(name, level, weights[level]))
        has_groups = has_groups or match_field.group is not None
    if has_groups:
        _count_best_agreement_per_group(contributions, config)
    score = 0.0
    for contribution in contributions:
        score += contribution.weight
    return PairScore(score, config.decide(score), tuple(contributions))


def _count_best_agreement_per_group(contributions: list[Contribution], config: MatchConfig) -> None:
    """Within a group, keep the heaviest positive weight (the first in config order on a tie,
    an order that does not depend on which record is a or b) and zero the other agreements."""
    best: dict[str, int] = {}
    for index, (match_field, contribution) in enumerate(
        zip(config.fields, contributions, strict=True)
    ):
        group = match_field.group
        if group is None or contribution.weight <= 0:
            continue
        if group not in best or contribution.weight > contributions[best[group]].weight:
            best[group] = index
    for index, (match_field, contribution) in enumerate(
        zip(config.fields, contributions, strict=True)
    ):
        group = match_field.group
        if group is not None and contribution.weight > 0 and best[group] != index:
            contributions[index] = contribution._replace(
                weight=0.0, counted_in=contributions[best[group]].field
            )


def score_pairs(
    records: Mapping[RecordId, Record],
    pairs: Iterable[tuple[RecordId, RecordId]],
    config: MatchConfig,
) -> Iterator[tuple[RecordId, RecordId, PairScore]]:
    for id_a, id_b in pairs:
        yield id_a, id_b, score_pair(records[id_a], records[id_b], config)


# --- blocking -------------------------------------------------------------------------------


def _signature(record: Record, config: MatchConfig) -> str:
    return "\x1f".join(_clean(record.get(f.field) or "") for f in config.fields)


def candidate_pairs(
    records: Mapping[RecordId, Record], config: MatchConfig
) -> list[tuple[RecordId, RecordId]]:
    """In-memory blocking for quality runs and small batches (production blocks in PostgreSQL
    with pg_trgm). Pairs come out once each, as (smaller id, larger id), sorted."""
    pairs: set[tuple[RecordId, RecordId]] = set()
    for rule in config.blocking:
        blocks: dict[str, list[RecordId]] = defaultdict(list)
        for record_id, record in records.items():
            for key in set(rule.keys(record)):
                if key:
                    blocks[key].append(record_id)
        for members in blocks.values():
            if len(members) < 2:
                continue
            if len(members) <= config.max_block_size:
                ordered = sorted(members)
                pairs.update(combinations(ordered, 2))
                continue
            neighbourhood = sorted(members, key=lambda i: (_signature(records[i], config), i))
            for start, id_a in enumerate(neighbourhood):
                for id_b in neighbourhood[start + 1 : start + config.window]:
                    pairs.add((id_a, id_b) if id_a < id_b else (id_b, id_a))
    return sorted(pairs)


# --- clusters and survivors -----------------------------------------------------------------


def cluster(decisions: Iterable[tuple[RecordId, RecordId, Decision]]) -> list[set[RecordId]]:
    """Connected components of the `merge` decisions (union-find), each of two records or more,
    ordered by their smallest id. The result does not depend on the order of the decisions
    nor of the ids within a pair. Reviews and distinct pairs join nothing."""
    parent: dict[RecordId, RecordId] = {}

    def root(node: RecordId) -> RecordId:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for id_a, id_b, decision in decisions:
        if decision != Decision.MERGE or id_a == id_b:
            continue
        ra, rb = root(id_a), root(id_b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[RecordId, set[RecordId]] = defaultdict(set)
    for node in parent:
        groups[root(node)].add(node)
    return [groups[key] for key in sorted(groups)]


def _created_at(record: Record) -> datetime | None:
    value = _present(record.get("created_at"))
    if value is None:
        return None
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"created_at without a time zone: {value!r}")
    return moment


def conflicting_clusters(
    clusters: Iterable[set[RecordId]],
    decisions: Iterable[tuple[RecordId, RecordId, Decision]],
) -> list[set[RecordId]]:
    """The clusters holding two records the scorer kept apart (`distinct`), in the order given.
    Union-find joins transitively, so one record that agrees with everyone and contradicts no
    one (a lead with only a company switchboard) can chain colleagues into one cluster. Such a
    cluster should go to review whole rather than merge."""
    apart: dict[RecordId, set[RecordId]] = defaultdict(set)
    for id_a, id_b, decision in decisions:
        if decision == Decision.DISTINCT:
            apart[id_a].add(id_b)
            apart[id_b].add(id_a)
    return [group for group in clusters if any(apart[i] & group for i in group if i in apart)]


_LATEST = datetime.max.replace(tzinfo=UTC)


def survivor(records: Mapping[RecordId, Record]) -> RecordId:
    """The record the others merge into: the oldest `created_at` (ISO 8601 with an offset;
    records without one come after those with one), then the smallest id. Raises ValueError on
    an empty cluster or a naive `created_at`."""
    if not records:
        raise ValueError("an empty cluster has no survivor")

    return min(
        records, key=lambda record_id: (_created_at(records[record_id]) or _LATEST, record_id)
    )


# --- quality ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PairQuality:
    """Pair-level quality against known true pairs. Recall counts the true pairs blocking
    never proposed as missed."""

    true_pairs: int
    candidate_pairs: int
    true_pairs_in_candidates: int
    merge_true: int
    merge_false: int
    review_true: int
    review_false: int

    @property
    def blocking_recall(self) -> float:
        return _ratio(self.true_pairs_in_candidates, self.true_pairs)

    @property
    def precision(self) -> float:
        return _ratio(self.merge_true, self.merge_true + self.merge_false)

    @property
    def recall(self) -> float:
        return _ratio(self.merge_true, self.true_pairs)

    @property
    def f1(self) -> float:
        return _f1(self.precision, self.recall)

    @property
    def precision_with_review(self) -> float:
        """As if every pair sent to review were confirmed."""
        found = self.merge_true + self.review_true
        return _ratio(found, found + self.merge_false + self.review_false)

    @property
    def recall_with_review(self) -> float:
        return _ratio(self.merge_true + self.review_true, self.true_pairs)

    @property
    def f1_with_review(self) -> float:
        return _f1(self.precision_with_review, self.recall_with_review)


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 1.0


def _f1(precision: float, recall: float) -> float:
    total = precision + recall
    return 2 * precision * recall / total if total else 0.0


def measure_quality(
    decisions: Iterable[tuple[RecordId, RecordId, Decision]],
    true_pairs: Collection[frozenset[RecordId]],
) -> PairQuality:
    """Precision, recall and F1 of pair decisions; `decisions` holds every candidate pair."""
    counts = {(decision, truth): 0 for decision in Decision for truth in (True, False)}
    candidates = 0
    for id_a, id_b, decision in decisions:
        candidates += 1
        counts[decision, frozenset((id_a, id_b)) in true_pairs] += 1
    in_candidates = sum(counts[decision, True] for decision in Decision)
    return PairQuality(
        true_pairs=len(true_pairs),
        candidate_pairs=candidates,
        true_pairs_in_candidates=in_candidates,
        merge_true=counts[Decision.MERGE, True],
        merge_false=counts[Decision.MERGE, False],
        review_true=counts[Decision.REVIEW, True],
        review_false=counts[Decision.REVIEW, False],
    )


# --- configurations -----------------------------------------------------------------------------
#
# Weights are log2(m/u) of hand-set guesses written beside each field as (m, u) per level; none
# was fitted to labelled pairs. Merge threshold (both configs): a blocked candidate pair starts
# at roughly 1:30 odds of being a duplicate, so 12 bits (≈ 4,000:1) leaves ≈ 99 % posterior
# certainty for an automatic merge. Review threshold: 6 bits (≈ 2:1 posterior) for persons; 8
# bits for leads, whose organisation weights are population odds while blocking has already
# brought colleagues together: from 6 to 8 bits sit mostly colleagues (the organisation agrees,
# an address or a phone differs), and on generated leads fewer than 1 in 20 of those pairs was
# a duplicate — not worth a reviewer's time.

_w = Weights.from_probabilities


def _email_key(record: Record) -> Iterator[str]:
    value = _present(record.get("email"))
    parsed = _email(value) if value else None
    if parsed is not None:
        yield f"{parsed.local}@{parsed.domain}"


def _phone_key(record: Record) -> Iterator[str]:
    digits = _phone_digits(record.get("phone_e164") or "")
    if len(digits) >= 7:
        yield digits[-10:]


def _company_key(record: Record) -> Iterator[str]:
    parts = _company_parts(record.get("company") or "")
    if parts.tokens:
        yield "".join(parts.sorted_tokens)[:12]


def _organisation_domain_key(record: Record) -> Iterator[str]:
    for name in ("domain", "website", "email"):
        value = _present(record.get(name))
        parsed = _domain(value) if value else None
        if parsed is not None:
            yield parsed.registrable


def _lead_name_key(record: Record) -> Iterator[str]:
    """Soundex of each word of the name, beside the first letters of the company and,
    separately, of the city."""
    tokens = _name_parts(record.get("full_name") or "", True).tokens
    places = (
        "co:" + _company_parts(record.get("company") or "").compact[:3],
        "ci:" + _clean(record.get("city") or "")[:3],
    )
    for token in tokens:
        if len(token) > 1:
            yield from (f"{soundex(token)}|{place}" for place in places if len(place) > 3)


# Leads are people at organisations. Phone, company, domain, city and website all describe the
# organisation (a lead's phone is often the switchboard, colleagues' direct lines differ by a
# digit, and the city is the office's): they form one group, so colleagues do not pile up five
# agreements. The person is told apart by name and mailbox.
_ORGANISATION = "organisation"

B2B_LEAD_CONFIG = MatchConfig(
    fields=(
        # One mailbox is one person (role mailboxes only reach partial). Partial mostly repeats
        # the name (john.smith@ / jsmith@), so it weighs little. People also write from private
        # addresses (differ, mild); two unrelated mailboxes at one organisation's domain are
        # colleagues, once name-shaped variants are set aside.
        MatchField(
            "email",
            EmailComparator(),
            _w(agree=(0.7, 1e-6), partial=(0.1, 1e-3), differ=(0.19, 0.8)),
        ),
        MatchField(
            "phone_e164",
            PhoneComparator(),
            _w(agree=(0.7, 1e-4), partial=(0.03, 1e-3)),
            group=_ORGANISATION,
        ),
        # After nicknames, initials, reordering, typos and dropped middle names, a true
        # duplicate whose names still disagree is rare (a changed surname, a wrong entry):
        # 1 in 2,000, so a name disagreement outweighs a shared switchboard and company.
        MatchField("full_name", NameComparator(), _w(agree=(0.8, 5e-4), partial=(0.1995, 5e-3))),
        MatchField(
            "company",
            CompanyComparator(),
            _w(agree=(0.8, 1e-3), partial=(0.15, 3e-3)),
            group=_ORGANISATION,
        ),
        # The organisation's registrable domain, from the website or a work address when the
        # domain field is empty (free-mail providers count as missing).
        MatchField(
            "domain",
            DomainComparator(),
            _w(agree=(0.75, 1e-3), partial=(0.05, 5e-4)),
            group=_ORGANISATION,
            fallbacks=("website", "email"),
        ),
        # Cities are few and companies have several offices: weak either way.
        MatchField(
            "city",
            AddressComparator(),
            _w(agree=(0.85, 0.04), partial=(0.05, 0.01)),
            group=_ORGANISATION,
        ),
        MatchField(
            "website",
            DomainComparator(),
            _w(agree=(0.7, 1e-3), partial=(0.05, 5e-4)),
            group=_ORGANISATION,
        ),
    ),
    high=12.0,
    low=8.0,
    blocking=(
        BlockingRule("email", _email_key),
        BlockingRule("phone", _phone_key),
        BlockingRule("company", _company_key),
        BlockingRule("organisation domain", _organisation_domain_key),
        BlockingRule("name sound + company or city", _lead_name_key),
    ),
)


def _febrl_names_key(record: Record) -> Iterator[str]:
    """Both names' Soundex, in either order (FEBRL swaps given name and surname)."""
    given, surname = soundex(record.get("given_name") or ""), soundex(record.get("surname") or "")
    if given and surname:
        yield "|".join(sorted((given, surname)))


def _febrl_surname_postcode_key(record: Record) -> Iterator[str]:
    surname, postcode = soundex(record.get("surname") or ""), _code(record.get("postcode") or "")
    if surname and postcode:
        yield f"{surname}|{postcode}"


def _febrl_given_postcode_key(record: Record) -> Iterator[str]:
    given, postcode = soundex(record.get("given_name") or ""), _code(record.get("postcode") or "")
    if given and postcode:
        yield f"{given}|{postcode}"


def _febrl_date_key(record: Record) -> Iterator[str]:
    date = _date_digits(record.get("date_of_birth") or "")
    if date:
        yield date


def _febrl_id_key(record: Record) -> Iterator[str]:
    """Each half of the identifier, so that one typo leaves the other half as a key."""
    code = _code(record.get("soc_sec_id") or "")
    if len(code) >= 6:
        yield "<" + code[: len(code) // 2 + 1]
        yield ">" + code[len(code) // 2 :]


# FEBRL: synthetic Australian person records whose duplicates carry a few typos, OCR and
# phonetic errors, dropped values and swapped fields, spread over the ten fields. So each field
# of a true duplicate agrees ≈ 80 % of the time, is a near miss ≈ 10 % and is lost or replaced
# the rest; u is how often two different people share the value.
FEBRL_CONFIG = MatchConfig(
    fields=(
        # Given names are few and skewed (≈ 1 % of pairs share one).
        MatchField("given_name", NameComparator(), _w(agree=(0.8, 0.01), partial=(0.1, 0.02))),
        MatchField("surname", NameComparator(), _w(agree=(0.8, 0.005), partial=(0.1, 0.01))),
        # Small numbers dominate; a one-digit edit is another house.
        MatchField("street_number", ExactComparator(), _w(agree=(0.85, 0.02))),
        MatchField(
            "address_1", AddressComparator(), _w(agree=(0.75, 0.001), partial=(0.15, 0.005))
        ),
        # Often empty (then it weighs nothing).
        MatchField("address_2", AddressComparator(), _w(agree=(0.7, 0.002), partial=(0.15, 0.01))),
        MatchField("suburb", AddressComparator(), _w(agree=(0.8, 0.003), partial=(0.12, 0.01))),
        # ≈ 3,000 postcodes in use; one digit off lands on ≈ 1 % of them.
        MatchField("postcode", CodeComparator(), _w(agree=(0.85, 0.001), partial=(0.08, 0.01))),
        # Eight states, two of them hold half the people.
        MatchField("state", ExactComparator(), _w(agree=(0.9, 0.25))),
        # ≈ 30,000 plausible birth dates; a typo or swapped day/month stays rare by chance.
        MatchField("date_of_birth", DateComparator(), _w(agree=(0.8, 5e-5), partial=(0.12, 2e-4))),
        # Seven digits, nearly unique.
        MatchField("soc_sec_id", CodeComparator(), _w(agree=(0.8, 1e-5), partial=(0.12, 1e-4))),
    ),
    high=12.0,
    low=6.0,
    blocking=(
        BlockingRule("names sound", _febrl_names_key),
        BlockingRule("surname sound + postcode", _febrl_surname_postcode_key),
        BlockingRule("given name sound + postcode", _febrl_given_postcode_key),
        BlockingRule("date of birth", _febrl_date_key),
        BlockingRule("social security id halves", _febrl_id_key),
    ),
)
