"""Synthetic B2B leads with known duplicates, to measure deduplication where no public labelled
set exists. People work at companies (colleagues share the company, its domain, its city and
sometimes its switchboard, which is what makes B2B matching hard); some people were captured
more than once, each time through a different form, import or typist:

- company names with their legal form spelled differently (Inc., Inc, Incorporated, LLC,
  L.L.C., Pvt Ltd, Private Limited, GmbH, Pty Ltd…) or dropped, abbreviated (Intl, Corp, Mfg,
  Svcs, Tech, &/and), words reordered, typos, changed case;
- people under a nickname (Robert/Bob), an initial, "Last, First", a typo, changed case;
- phones in national, international and punctuated formats (+1 (415) 555-0101,
  415.555.0101, 0044 20 7946 0958, +49 (0)30…), now and then a mistyped or another number;
- e-mails in the company's other pattern (first.last@ / flast@), a private address instead,
  Gmail dots, +tags, capitals; city aliases (Bangalore/Bengaluru) and typos; missing fields.

Deterministic for a seed (only `random.Random(seed)` and lists, never set order); no network
and no data files.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import combinations

Lead = dict[str, str | None]

_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def _words(text: str) -> tuple[str, ...]:
    """Space-separated words; "_" stands for a space inside one (Van_der_Berg)."""
    return tuple(word.replace("_", " ") for word in text.split())


# Given names, with the nicknames people really use for them after ":" (some of which the
# matcher does not know: Peggy, Dick…).
_FIRST_NAME_TABLE = _words(
    "Robert:Bob/Rob/Bobby William:Bill/Will/Liam Richard:Rick/Dick/Rich James:Jim/Jimmy "
    "John:Jack/Johnny Michael:Mike/Mick Elizabeth:Liz/Beth/Betty Katherine:Kate/Kathy/Katie "
    "Margaret:Maggie/Peggy/Meg Jennifer:Jen/Jenny Christopher:Chris Daniel:Dan/Danny "
    "Matthew:Matt Anthony:Tony Joseph:Joe Thomas:Tom Charles:Charlie/Chuck Edward:Ed/Ted "
    "Patricia:Pat/Trish Alexander:Alex Andrew:Andy Benjamin:Ben Samuel:Sam Nicholas:Nick "
    "Steven:Steve Susan:Sue Deborah:Debbie Rebecca:Becky Jessica:Jess Victoria:Vicky "
    "Timothy:Tim Jonathan:Jon Gregory:Greg Kenneth:Ken David:Dave Peter:Pete Laura Sarah "
    "Emily Olivia Charlotte Amelia Sophie Hannah Grace Chloe Lucy Ella Harry Oliver George "
    "Noah Ethan Lucas Mason Priya Rahul Ananya Arjun Vikram Sanjay Deepak Lakshmi Aditi "
    "Rohan Kavya Jürgen Klaus Stefan Sabine Anja Lukas Jörg Katrin Wei Mei Hiroshi Yuki "
    "Fatima Omar Aisha Carlos María José Sofia Chloé François Isabelle Mateo Zoë"
)
_FIRST_NAMES: dict[str, tuple[str, ...]] = {
    name: tuple(nicknames.split("/")) if nicknames else ()
    for name, _, nicknames in (entry.partition(":") for entry in _FIRST_NAME_TABLE)
}
_SURNAMES = _words(
    "Smith Johnson Williams Brown Jones Miller Davis Wilson Taylor Anderson Thomas Moore Martin "
    "Jackson Thompson White Harris Clark Lewis Robinson Walker Young Allen King Wright Scott "
    "Green Baker Adams Nelson Hill Campbell Mitchell Roberts Carter Phillips Evans Turner Parker "
    "Collins Edwards Stewart Morris Murphy Cook Rogers Morgan Cooper Peterson Reed Bailey Kelly "
    "Howard Cox Ward Richardson Watson Brooks Wood James Bennett Gray Hughes Price Sanders Myers "
    "Long Ross Foster Patel Sharma Gupta Singh Kumar Reddy Iyer Nair Rao Mehta Agarwal Chatterjee "
    "Desai Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Koch "
    "Schröder Neumann Zimmermann Krüger O'Brien O'Connor McDonald MacLeod Fitzgerald Nguyen Tran "
    "Chen Wang Li Zhang Liu Tanaka Suzuki Sato Kim Park Lee García Rodríguez Martínez Hernández "
    "López González Pérez Sánchez Ramírez Dubois Lefebvre Moreau Laurent Rossi Russo Ferrari "
    "Esposito Bianchi Kowalski Nowak Jansen DeVries Andersson Johansson Larsen Nielsen Okafor "
    "Mensah Haddad Khan Hussain Ali Ahmed Cohen Levy Friedman Harper Fletcher Sullivan Hayes "
    "Doyle Quinn Barrett Holland Van_der_Berg De_la_Cruz"
)


@dataclass(frozen=True, slots=True)
class _Country:
    code: str
    dialling: str
    tld: str
    legal_forms: tuple[tuple[str, ...], ...]  # each: spellings of one legal form
    cities: tuple[tuple[str, ...], ...]  # each: the usual spelling first, then aliases
    area_codes: tuple[tuple[str, int], ...]  # (area code, subscriber digits)
    weight: float


_COUNTRIES = (
    _Country(
        "US",
        "1",
        "com",
        (
            ("Inc.", "Inc", "Incorporated", ", Inc.", "INC"),
            ("LLC", "L.L.C.", "llc", ", LLC"),
            ("Corp.", "Corporation", "Corp"),
        ),
        (
            ("New York", "New York City", "NYC"),
            ("San Francisco", "SF"),
            ("Chicago",),
            ("Austin",),
            ("Boston",),
            ("Seattle",),
            ("Denver",),
            ("Atlanta",),
            ("Los Angeles", "LA"),
            ("San Jose",),
            ("Dallas",),
            ("Miami",),
            ("Portland",),
            ("Philadelphia", "Philly"),
        ),
        (
            ("212", 7),
            ("415", 7),
            ("312", 7),
            ("512", 7),
            ("617", 7),
            ("206", 7),
            ("303", 7),
            ("404", 7),
            ("213", 7),
            ("408", 7),
            ("214", 7),
            ("305", 7),
            ("503", 7),
            ("215", 7),
        ),
        0.45,
    ),
    _Country(
        "GB",
        "44",
        "co.uk",
        (("Ltd", "Ltd.", "Limited", "LTD"), ("PLC", "plc", "Public Limited Company")),
        (
            ("London",),
            ("Manchester",),
            ("Birmingham",),
            ("Leeds",),
            ("Edinburgh",),
            ("Bristol",),
            ("Glasgow",),
            ("Cambridge",),
        ),
        (("20", 8), ("161", 7), ("121", 7), ("113", 7), ("131", 7), ("117", 7), ("141", 7)),
        0.2,
    ),
    _Country(
        "DE",
        "49",
        "de",
        (("GmbH", "G.m.b.H.", "Gmbh"), ("AG",), ("GmbH & Co. KG", "GmbH & Co KG")),
        (
            ("München", "Muenchen", "Munich"),
            ("Köln", "Koeln", "Cologne"),
            ("Düsseldorf", "Duesseldorf"),
            ("Berlin",),
            ("Hamburg",),
            ("Frankfurt am Main", "Frankfurt"),
            ("Stuttgart",),
        ),
        (("89", 8), ("221", 7), ("211", 7), ("30", 8), ("40", 8), ("69", 8), ("711", 7)),
        0.12,
    ),
    _Country(
        "IN",
        "91",
        "in",
        (
            ("Pvt Ltd", "Pvt. Ltd.", "Private Limited", "Pvt. Limited", "Pvt Ltd."),
            ("Ltd", "Limited"),
        ),
        (
            ("Bengaluru", "Bangalore"),
            ("Mumbai", "Bombay"),
            ("New Delhi", "Delhi"),
            ("Pune",),
            ("Hyderabad",),
            ("Chennai", "Madras"),
            ("Gurugram", "Gurgaon"),
        ),
        (("80", 8), ("22", 8), ("11", 8), ("20", 8), ("40", 8), ("44", 8), ("124", 7)),
        0.13,
    ),
    _Country(
        "AU",
        "61",
        "com.au",
        (("Pty Ltd", "Pty. Ltd.", "Pty Limited", "PTY LTD"),),
        (("Sydney",), ("Melbourne",), ("Brisbane",), ("Perth",), ("Adelaide",)),
        (("2", 8), ("3", 8), ("7", 8), ("8", 8)),
        0.1,
    ),
)

# Full word → the abbreviations people type for it.
_ABBREVIATIONS: dict[str, tuple[str, ...]] = {
    "International": ("Intl", "Intl.", "Int'l"),
    "Manufacturing": ("Mfg", "Mfg."),
    "Services": ("Svcs", "Svcs."),
    "Technologies": ("Tech",),
    "Systems": ("Sys",),
    "Associates": ("Assoc", "Assocs"),
    "Brothers": ("Bros", "Bros."),
    "Laboratories": ("Labs",),
    "Management": ("Mgmt",),
    "Engineering": ("Engg", "Eng."),
    "Industries": ("Inds",),
    "Communications": ("Comms",),
    "Partners": ("Ptnrs",),
    "Holdings": ("Hldgs",),
    "Solutions": ("Solns",),
    "and": ("&",),
}
_INDUSTRY = _words(
    "Logistics Software Consulting Manufacturing Services Technologies Systems Solutions "
    "Laboratories Engineering Industries Communications Holdings Analytics Foods Energy Robotics "
    "Capital Media Health Freight Textiles Pharma Design Management"
)
_ADJECTIVES = _words(
    "Blue Green Red Silver Golden Bright Swift Northern Southern Eastern Western Pacific Atlantic "
    "Summit Pioneer Global United Allied Prime Apex Vertex Crystal Iron Granite Cedar Maple Oak "
    "Harbor River Lake Mountain Coastal Urban Royal Modern Rapid Smart Clear Bold True First "
    "Advanced Precision Quantum Digital Open Evergreen Sunrise"
)
_NOUNS = _words(
    "Bridge Wave Peak Stone Point Path Gate Field Forge Works Labs Ridge Valley Star Rock Spring "
    "Leaf Light Arc Core Link Line Loop Hub Nest Port Shore Sky Wind Fox Hawk Wolf Bear Lion "
    "Falcon Anchor Compass Beacon Harvest Orchard Canyon Meadow Prairie Delta"
)
_WORK_PATTERNS: tuple[Callable[[str, str], str], ...] = (
    lambda f, s: f"{f}.{s}",
    lambda f, s: f"{f[0]}{s}",
    lambda f, s: f,
    lambda f, s: f"{f}{s[0]}",
    lambda f, s: f"{f}_{s}",
    lambda f, s: f"{f}{s}",
)
# Mobile prefix and national number length, per country.
_MOBILE_PREFIXES = {"GB": ("7", 10), "DE": ("15", 11), "IN": ("9", 10), "AU": ("4", 9)}
_PERSONAL_PROVIDERS = ("gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com")


@dataclass(frozen=True, slots=True)
class _Company:
    words: tuple[str, ...]  # the name in full words, without legal form
    legal_form: tuple[str, ...]  # spellings of its legal form
    country: _Country
    domain: str
    city: tuple[str, ...]
    switchboard: tuple[str, str]  # (area code, subscriber)
    direct_prefix: str  # direct lines share all but their last three digits
    email_pattern: int


@dataclass(frozen=True, slots=True)
class _Person:
    first: str
    middle: str
    surname: str
    company: _Company
    phone: tuple[str, str]
    mobile: tuple[str, str]
    work_email: str
    personal_email: str
    prefers_personal_email: bool


def _ascii_word(text: str) -> str:
    folded = (
        text.lower()
        .replace("ä", "ae")
        .replace("ö", "oe")
        .replace("ü", "ue")
        .replace("ß", "ss")
        .translate(str.maketrans("áàâãéèêëíìîïóòôõúùûçñ", "aaaaeeeeiiiioooouuucn"))
    )
    return "".join(c for c in folded if c in string.ascii_lowercase)


class _Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)  # noqa: S311 — test data, not secrets
        self.used_cores: set[str] = set()  # these sets are only asked, never iterated
        self.used_domains: set[str] = set()
        self.used_locals: dict[str, int] = {}
        self.used_personal: set[str] = set()

    # --- the true entities -----------------------------------------------------------------

    def company(self) -> _Company:
        rng = self.rng
        country = rng.choices(_COUNTRIES, weights=[c.weight for c in _COUNTRIES])[0]
        while True:
            words = self._company_words()
            core = "".join(_ascii_word(w) for w in words if w != "and")
            if core not in self.used_cores:
                self.used_cores.add(core)
                break
        area, digits = rng.choice(country.area_codes)
        switchboard = (area, self._digits(digits))
        direct_prefix = self._digits(digits - 3)
        domain_words = [_ascii_word(w) for w in words if w not in ("and", "&")]
        domain_label = "".join(domain_words[:2]) if rng.random() < 0.5 else "".join(domain_words)
        if rng.random() < 0.15:
            domain_label = "-".join(domain_words[:2])
        tld = country.tld if rng.random() < 0.6 else "com"
        domain = f"{domain_label}.{tld}"
        while domain in self.used_domains:  # Smith & Jones and Smith Jones Logistics
            domain_label += str(rng.randrange(10))
            domain = f"{domain_label}.{tld}"
        self.used_domains.add(domain)
        return _Company(
            words=words,
            legal_form=rng.choice(country.legal_forms),
            country=country,
            domain=domain,
            city=rng.choice(country.cities),
            switchboard=switchboard,
            direct_prefix=direct_prefix,
            email_pattern=rng.randrange(len(_WORK_PATTERNS)),
        )

    def _company_words(self) -> tuple[str, ...]:
        rng = self.rng
        shape = rng.random()
        if shape < 0.25:
            return (rng.choice(_SURNAMES), rng.choice(_INDUSTRY))
        if shape < 0.4:
            return (rng.choice(_SURNAMES), "and", rng.choice(_SURNAMES))
        if shape < 0.7:
            return (rng.choice(_ADJECTIVES), rng.choice(_NOUNS), rng.choice(_INDUSTRY))
        if shape < 0.85:
            return (rng.choice(_ADJECTIVES) + rng.choice(_NOUNS).lower(), rng.choice(_INDUSTRY))
        return (rng.choice(_ADJECTIVES), rng.choice(_INDUSTRY), "International")

    def person(self, company: _Company) -> _Person:
        rng = self.rng
        first = rng.choice(list(_FIRST_NAMES))
        # A few surnames are much more common than the rest, as in life.
        surname = rng.choice(_SURNAMES[:12]) if rng.random() < 0.2 else rng.choice(_SURNAMES)
        middle = rng.choice(string.ascii_uppercase) if rng.random() < 0.3 else ""
        kind = rng.random()
        if kind < 0.55:
            phone = (company.switchboard[0], company.direct_prefix + self._digits(3))
        elif kind < 0.8:
            phone = company.switchboard
        else:
            phone = self._mobile(company.country)
        f, s = _ascii_word(first), _ascii_word(surname)
        local = _WORK_PATTERNS[company.email_pattern](f, s)
        key = f"{local}@{company.domain}"
        self.used_locals[key] = self.used_locals.get(key, 0) + 1
        if self.used_locals[key] > 1:  # two Jane Smiths at one company
            local += str(self.used_locals[key])
        personal_local = rng.choice((f"{f}.{s}", f"{f}{s}", f"{f}.{s}{rng.randrange(10, 99)}"))
        provider = rng.choice(_PERSONAL_PROVIDERS)
        while f"{personal_local}@{provider}" in self.used_personal:  # a provider's is taken
            personal_local += str(rng.randrange(10))
        self.used_personal.add(f"{personal_local}@{provider}")
        return _Person(
            first=first,
            middle=middle,
            surname=surname,
            company=company,
            phone=phone,
            mobile=self._mobile(company.country),
            work_email=f"{local}@{company.domain}",
            personal_email=f"{personal_local}@{provider}",
            prefers_personal_email=rng.random() < 0.12,
        )

    def _digits(self, n: int) -> str:
        return str(self.rng.randrange(2, 10)) + "".join(
            str(self.rng.randrange(10)) for _ in range(n - 1)
        )

    def _mobile(self, country: _Country) -> tuple[str, str]:
        if country.code == "US":  # American mobiles live in geographic area codes
            return (self.rng.choice(country.area_codes)[0], self._digits(7))
        prefix, length = _MOBILE_PREFIXES[country.code]
        return ("", prefix + self._digits(length - len(prefix)))

    # --- rendering one capture of a person, with noise ------------------------------------

    def render(self, person: _Person, *, noisy: bool) -> Lead:
        rng = self.rng
        company = person.company
        p = 1.0 if noisy else 0.0  # noise only on re-captures; formats vary on every record
        return {
            "full_name": self._name(person, p),
            "company": self._company_name(company, p),
            "email": self._email(person, p),
            "phone_e164": self._phone(person, p),
            "city": self._city(company, p),
            "domain": self._maybe(0.45 + 0.1 * p, lambda: self._domain_text(company.domain)),
            "website": self._maybe(0.55 + 0.1 * p, lambda: self._website(company.domain)),
            "country": company.country.code,
            "created_at": (_EPOCH + timedelta(seconds=rng.randrange(365 * 86400))).isoformat(),
        }

    def _maybe(self, missing: float, value: Callable[[], str]) -> str | None:
        return None if self.rng.random() < missing else value()

    def _name(self, person: _Person, p: float) -> str | None:
        rng = self.rng
        if rng.random() < 0.02 * p:
            return None
        first, surname = person.first, person.surname
        middle = person.middle
        roll = rng.random()
        if roll < 0.25 * p and _FIRST_NAMES[first]:
            first = rng.choice(_FIRST_NAMES[first])
        elif roll < 0.33 * p:
            first = first[0] + "."
        if rng.random() < 0.5:
            middle = ""  # a middle initial is written down or not, on any capture
        if rng.random() < 0.1 * p:
            surname = self._typo(surname)
        elif rng.random() < 0.06 * p:
            first = self._typo(first)
        parts = [first, f"{middle}." if middle and rng.random() < 0.5 else middle, surname]
        name = " ".join(part for part in parts if part)
        if rng.random() < 0.1 * p:
            name = f"{surname}, {first}"
        return self._case(name, 0.12 * p)

    def _company_name(self, company: _Company, p: float) -> str | None:
        rng = self.rng
        if rng.random() < 0.03 + 0.05 * p:
            return None
        words = list(company.words)
        if rng.random() < 0.3 * p:
            words = [
                rng.choice(_ABBREVIATIONS[w]) if w in _ABBREVIATIONS and rng.random() < 0.7 else w
                for w in words
            ]
        elif "and" in words and rng.random() < 0.6:
            words = ["&" if w == "and" else w for w in words]
        if rng.random() < 0.07 * p and len(words) > 1:
            # "Smith & Jones" → "Jones & Smith", "Blue Wave Logistics" → "Logistics Blue Wave"
            words = [words[-1], *words[1:-1], words[0]] if len(words) == 3 else words[::-1]
        name = " ".join(words)
        if rng.random() < 0.08 * p:
            name = self._typo(name)
        form_roll = rng.random()
        if form_roll < 0.2:
            form = ""  # legal form left out
        elif form_roll < 0.2 + 0.5 * p:
            form = rng.choice(company.legal_form)
        else:
            form = company.legal_form[0]
        if form:
            name = f"{name}{form}" if form.startswith(",") else f"{name} {form}"
        return self._case(name, 0.1 * p)

    def _email(self, person: _Person, p: float) -> str | None:
        rng = self.rng
        if rng.random() < 0.04 + 0.12 * p:
            return None
        use_personal = person.prefers_personal_email != (rng.random() < 0.15 * p)
        address = person.personal_email if use_personal else person.work_email
        local, _, domain = address.partition("@")
        if not use_personal and rng.random() < 0.12 * p:
            f, s = _ascii_word(person.first), _ascii_word(person.surname)
            local = rng.choice(_WORK_PATTERNS)(f, s)  # the company's other pattern
        if domain == "gmail.com" and rng.random() < 0.5 * p:
            local = local.replace(".", "") if "." in local else local[:2] + "." + local[2:]
        if rng.random() < 0.05 * p:
            local += "+" + rng.choice(("crm", "news", "events", "leads"))
        address = f"{local}@{domain}"
        return address.title() if rng.random() < 0.05 * p else address

    def _phone(self, person: _Person, p: float) -> str | None:
        rng = self.rng
        if rng.random() < 0.12 + 0.12 * p:
            return None
        area, subscriber = person.mobile if rng.random() < 0.1 * p else person.phone
        if rng.random() < 0.04 * p:
            digits = list(subscriber)
            digits[rng.randrange(len(digits))] = str(rng.randrange(10))
            subscriber = "".join(digits)
        return _format_phone(rng, person.company.country, area, subscriber)

    def _city(self, company: _Company, p: float) -> str | None:
        rng = self.rng
        if rng.random() < 0.1 + 0.1 * p:
            return None
        city = company.city[0]
        if len(company.city) > 1 and rng.random() < 0.2 * p:
            city = rng.choice(company.city[1:])
        if rng.random() < 0.05 * p:
            city = self._typo(city)
        return self._case(city, 0.1 * p)

    def _domain_text(self, domain: str) -> str:
        return self.rng.choice((domain, domain, f"www.{domain}", domain.upper()))

    def _website(self, domain: str) -> str:
        return self.rng.choice(
            (
                f"https://www.{domain}/",
                f"https://{domain}",
                f"http://www.{domain}",
                f"www.{domain}",
                domain,
                f"https://www.{domain}/contact",
                f"https://www.{domain}/?utm_source=linkedin",
            )
        )

    def _typo(self, text: str) -> str:
        """One insertion, deletion, substitution or swap of adjacent letters."""
        rng = self.rng
        positions = [i for i, c in enumerate(text) if c.isalpha()]
        if len(positions) < 3:
            return text
        i = rng.choice(positions[1:])  # first letters are rarely mistyped
        letter = rng.choice(string.ascii_lowercase)
        kind = rng.randrange(4)
        if kind == 0:
            return text[:i] + letter + text[i:]
        if kind == 1:
            return text[:i] + text[i + 1 :]
        if kind == 2:
            return text[:i] + letter + text[i + 1 :]
        if i + 1 < len(text):
            return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
        return text[: i - 1] + text[i] + text[i - 1]

    def _case(self, text: str, chance: float) -> str:
        if self.rng.random() >= chance:
            return text
        return self.rng.choice((text.upper(), text.lower()))


def _format_phone(rng: random.Random, country: _Country, area: str, subscriber: str) -> str:
    cc = country.dialling
    national = area + subscriber
    if country.code == "US":
        a, b, c = area, subscriber[:3], subscriber[3:]
        formats: tuple[str, ...] = (
            f"+1 ({a}) {b}-{c}",
            f"+1 {a} {b} {c}",
            f"({a}) {b}-{c}",
            f"{a}.{b}.{c}",
            f"{a}-{b}-{c}",
            f"+1{a}{b}{c}",
            f"001 {a} {b} {c}",
            f"1-{a}-{b}-{c}",
        )
    else:
        half = len(subscriber) // 2
        spaced = f"{subscriber[:half]} {subscriber[half:]}"
        lead = f"{area} " if area else ""
        formats = (
            f"+{cc} {lead}{spaced}",
            f"0{lead}{spaced}",
            f"00{cc} {lead}{spaced}",
            f"+{cc}{national}",
            f"+{cc} (0){lead}{spaced}",
            f"(0{area}) {spaced}" if area else f"0{spaced}",
        )
    return rng.choice(formats)


def generate_b2b(
    n_entities: int, *, dup_rate: float = 0.3, seed: int = 0
) -> tuple[dict[str, Lead], set[frozenset[str]]]:
    """`n_entities` people, `dup_rate` of them captured more than once (one extra capture in
    70 % of those, two in 20 %, three in 10 %). Returns the leads by id (ids in shuffled order,
    so they say nothing about who is who) and every pair of ids that are the same person."""
    if n_entities < 0 or not 0 <= dup_rate <= 1:
        raise ValueError("n_entities must be ≥ 0 and dup_rate within [0, 1]")
    generator = _Generator(seed)
    rng = generator.rng
    companies = [generator.company() for _ in range(max(1, n_entities // 3))]
    # Company sizes are skewed: a few employ many of the leads.
    weights = [1 / (rank + 1) ** 0.8 for rank in range(len(companies))]
    captures: list[tuple[int, Lead]] = []
    for entity in range(n_entities):
        person = generator.person(rng.choices(companies, weights=weights)[0])
        captures.append((entity, generator.render(person, noisy=False)))
        if rng.random() < dup_rate:
            extra = rng.choices((1, 2, 3), weights=(0.7, 0.2, 0.1))[0]
            captures.extend((entity, generator.render(person, noisy=True)) for _ in range(extra))
    rng.shuffle(captures)
    records: dict[str, Lead] = {}
    by_entity: dict[int, list[str]] = {}
    for index, (entity, lead) in enumerate(captures):
        record_id = f"lead-{index:07d}"
        records[record_id] = lead
        by_entity.setdefault(entity, []).append(record_id)
    true_pairs = {
        frozenset(pair)
        for ids in by_entity.values()
        if len(ids) > 1
        for pair in combinations(ids, 2)
    }
    return records, true_pairs
