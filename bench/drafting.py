"""Drafting: template drafts/s (evidence + sandboxed render + validation) beside bare Jinja2
rendering of the same template in the same run. Pure CPU: no database, no network.

Setup (not timed): N distinct synthetic leads (fixed seed), each as provenance rows
(`Observation`) for full name, e-mail, company, domain, city, country and title, from one to
three sources at different times: some values superseded by newer ones, some over a year old
(low confidence), some fields absent (no title: the optional phrase is left out; no name:
"Hi there"; no company: a visible "[missing: company]" gap).

1. Template draft, per lead, what the platform does for a first-touch e-mail:
   `evidence_from(observations, now, verified)` → `compose(default e-mail template, friendly
   tone, medium length, cta "book_call", first message)` (template check, sandboxed render with
   evidence markers, sentences, compliance footer, content hash) → `validate(body)` and
   `validate(subject)` against the lead's evidence values and the sender's name and company, the
   CTA sentence and the compliance lines. Every draft must pass validation: a rejected draft is
   not the path the platform takes, so the run fails if any is rejected.
2. Raw limit: the same template's subject and body sources compiled once by a plain
   `jinja2.Environment` (no sandbox, no finalize hook, default Undefined; the same
   trim_blocks/lstrip_blocks so it prints the same text), then `.render()` per lead with plain
   dicts of the same values (the values `evidence_from` picks), built before timing.

Each round runs both over every lead, in blocks of 100 leads alternating which path goes first
(both see the same machine); the best round of each is the figure. The stages of each draft
(evidence, compose, validate) are timed too.

    .venv/bin/python -m bench.drafting [--leads 2000] [--rounds 5] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import jinja2

from bench.common import CpuMeter, Figure, heading, percentile, rate, start_watchdog, table
from leadrelay.core.runtime import settle_process
from leadrelay.drafting.compose import SUBJECT_LIMIT, check_draft, compliance_lines, compose
from leadrelay.drafting.evidence import Channel, Length, Observation, Sender, Tone, evidence_from
from leadrelay.drafting.templates import MessageTemplate, cta_text, default_template
from leadrelay.drafting.validate import validate

LEADS = 2_000
ROUNDS = 3
WARMUP_LEADS = 200
BLOCK = 100  # leads per timed block; the paths alternate block by block
TARGET_RATIO = 0.25  # issue: template drafts ≥ 25% of bare rendering
SECTION_BUDGET = 12.0  # seconds of measuring; later rounds are skipped past it (both alike)
BODY_LIMIT = 10_000  # the e-mail body limit (compose.BODY_LIMITS[Channel.EMAIL])

CHANNEL = Channel.EMAIL
TONE = Tone.FRIENDLY
LENGTH = Length.MEDIUM
CTA = "book_call"
# Every draft is composed at this instant, so confidences (stale after a year) never move.
AT = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)

SENDER = Sender(
    name="Sam Carter",
    company="Initech GmbH",
    postal_address="Hauptstraße 1\n10115 Berlin\nGermany",
    email="sam@initech.example",
)

# --- leads ---------------------------------------------------------------------------------

FIRST_NAMES = (
    "Jane", "John", "Maria", "José", "Zoë", "Łukasz", "Aiko", "Chidi", "Priya", "Lars",
    "Fatima", "Mateo", "Ingrid", "Omar", "Mei", "Sven", "Amélie", "Kwame", "Nora", "Rafael",
    "Hana", "Tomás", "Elif", "Dmitri", "Sofia", "Arjun", "Chloé", "Björn", "Leila", "Yusuf",
)  # fmt: skip
LAST_NAMES = (
    "Doe", "Smith", "García", "Müller", "Nakamura", "Okafor", "Sharma", "Johansson", "Haddad",
    "Rossi", "Kowalski", "Chen", "Dubois", "Mensah", "O'Brien", "Van der Berg", "Yılmaz",
    "Petrov", "Silva", "Novak", "Fischer", "Lindqvist", "Moreau", "Costa", "Andersen",
)  # fmt: skip
HONORIFICS = ("Dr.", "Ms.", "Mr.")
ROOTS = (
    "Globex", "Umbrella", "Stark", "Wayne", "Acme", "Hooli", "Vandelay", "Soylent", "Cyberdyne",
    "Tyrell", "Wonka", "Monarch", "Oscorp", "Aperture", "Massive", "Dunder", "Prestige",
    "Gringotts", "Nakatomi", "Virtucon", "Bluth", "Pied Piper", "Sterling", "Krusty", "Gekko",
)  # fmt: skip
STEMS = ("Systems", "Logistics", "Analytics", "Foods", "Labs", "Holdings", "Robotics", "Media")
LEGAL = ("Inc.", "GmbH", "Ltd", "S.A.", "AG", "LLC", "")
TITLES = (
    "Head of Sales", "VP Marketing", "Chief Revenue Officer", "Sales Director", "CTO",
    "Founder & CEO", "Head of Growth", "Operations Manager", "Procurement Lead",
    "Director of Partnerships", "Head of Sales Operations", "Marketing Manager",
)  # fmt: skip
PLACES = (
    ("Berlin", "DE"), ("Munich", "DE"), ("London", "GB"), ("Paris", "FR"), ("Madrid", "ES"),
    ("Milan", "IT"), ("Stockholm", "SE"), ("Amsterdam", "NL"), ("New York", "US"),
    ("Toronto", "CA"), ("São Paulo", "BR"), ("Tokyo", "JP"), ("Lagos", "NG"), ("Zurich", "CH"),
)  # fmt: skip
SOURCES = ("crm_import", "web_form", "enrichment_api", "event_badge_scan", "sales_rep_note")

NO_NAME_SHARE = 0.08
NO_COMPANY_SHARE = 0.04
NO_TITLE_SHARE = 0.30
NO_PLACE_SHARE = 0.25
HONORIFIC_SHARE = 0.10
STALE_SHARE = 0.15  # newest observation of a field over a year old: LOW confidence
SUPERSEDED_SHARE = 0.20  # an older observation with another value (a former employer, title)
VERIFIED_EMAIL_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class Lead:
    observations: list[Observation]
    verified: frozenset[str]


def _slug(text: str) -> str:
    kept = "".join(ch for ch in text.casefold() if ch.isascii() and ch.isalnum())
    return kept or "x"


def _company(rng: random.Random) -> str:
    return " ".join(p for p in (rng.choice(ROOTS), rng.choice(STEMS), rng.choice(LEGAL)) if p)


def make_leads(count: int, *, seed: int = 41) -> list[Lead]:
    """`count` distinct leads (distinct name, company and e-mail), deterministic for `seed`."""
    rng = random.Random(seed)
    leads: list[Lead] = []
    seen: set[tuple[str, str]] = set()
    while len(leads) < count:
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        company = _company(rng)
        if (f"{first} {last}", company) in seen:
            continue
        seen.add((f"{first} {last}", company))
        domain = f"{_slug(company.split()[0])}-{_slug(company.split()[1])}.example"
        values: dict[str, str] = {
            "email": f"{_slug(first)}.{_slug(last)}@{domain}",
            "domain": domain,
        }
        if rng.random() >= NO_NAME_SHARE:
            honorific = rng.choice(HONORIFICS) + " " if rng.random() < HONORIFIC_SHARE else ""
            values["full_name"] = f"{honorific}{first} {last}"
        if rng.random() >= NO_COMPANY_SHARE:
            values["company"] = company
        if rng.random() >= NO_TITLE_SHARE:
            values["title"] = rng.choice(TITLES)
        if rng.random() >= NO_PLACE_SHARE:
            values["city"], values["country"] = rng.choice(PLACES)
        observations: list[Observation] = []
        for name, value in values.items():
            newest = timedelta(days=rng.randint(400, 900) if rng.random() < STALE_SHARE else 0)
            newest += timedelta(days=rng.randint(1, 300), minutes=rng.randint(0, 1439))
            for source in rng.sample(SOURCES, rng.randint(1, 3)):
                at = AT - newest - timedelta(days=rng.randint(0, 30))
                # Case differences still agree (evidence compares case-insensitively).
                shown = value.upper() if name == "email" and rng.random() < 0.2 else value
                observations.append(Observation(name, shown, None, source, at))
            # The newest row carries the current value, whichever source sent it.
            observations.append(Observation(name, value, None, rng.choice(SOURCES), AT - newest))
            if name in ("company", "title") and rng.random() < SUPERSEDED_SHARE:
                old = _company(rng) if name == "company" else rng.choice(TITLES)
                at = AT - newest - timedelta(days=rng.randint(200, 1500))
                observations.append(Observation(name, old, None, rng.choice(SOURCES), at))
        rng.shuffle(observations)
        verified = frozenset({"email"} if rng.random() < VERIFIED_EMAIL_SHARE else ())
        leads.append(Lead(observations, verified))
    return leads


# --- the two paths -------------------------------------------------------------------------


@dataclass
class Path:
    """Every round of one path over all leads, timed block by block: the best round is its
    figure."""

    name: str
    leads: int = 0
    round_seconds: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # seconds per draft, all rounds
    stages: dict[str, float] = field(default_factory=dict)  # seconds summed, all rounds
    _seconds: float = 0.0  # the current round so far

    def timed(self, work: Callable[[], None]) -> None:
        started = time.perf_counter()
        work()
        self._seconds += time.perf_counter() - started

    def end_round(self) -> None:
        self.round_seconds.append(self._seconds)
        self._seconds = 0.0

    @property
    def best(self) -> float:
        return min(self.round_seconds, default=float("nan"))

    @property
    def rate(self) -> float:
        return self.leads / self.best if self.round_seconds else 0.0

    @property
    def median_rate(self) -> float:
        return self.leads / statistics.median(self.round_seconds) if self.round_seconds else 0.0

    def us(self, fraction: float) -> float:
        return percentile(self.latencies, fraction) * 1e6

    def row(self, raw: Path) -> list[str]:
        return [
            self.name,
            f"{len(self.round_seconds)} x {self.leads:,}",
            f"{self.best:.3f}",
            rate(self.rate),
            rate(self.median_rate),
            f"{self.rate / raw.rate:.1%}" if raw.rate else "-",
            f"{self.best / self.leads * 1e6:.1f}",
        ]


@dataclass(frozen=True, slots=True)
class Prepared:
    """What the bare render gets per lead: plain dicts of the values evidence picked."""

    contexts: list[dict[str, Any]]
    subject: jinja2.Template
    body: jinja2.Template


def _allowed() -> list[str]:
    """What the platform vouches for besides lead evidence: the sender, the CTA sentence and
    the compliance lines it appends itself."""
    return [
        SENDER.name,
        SENDER.company,
        cta_text(CTA, TONE),
        *compliance_lines(CHANNEL, SENDER, first_message=True),
    ]


def draft_one(
    template: MessageTemplate, lead: Lead, allowed: Sequence[str], *, facts: bool = False
) -> list[str]:
    """The platform's path for one lead; the validation problems (empty when it passes).
    `facts` adds the fact check an LLM's text gets (template drafts do not need it: their
    values are evidence by construction), to show what it would cost."""
    evidence = evidence_from(lead.observations, now=AT, verified=lead.verified)
    draft = compose(
        template,
        evidence,
        sender=SENDER,
        channel=CHANNEL,
        tone=TONE,
        length=LENGTH,
        cta=CTA,
        first_message=True,
        now=AT,
    )
    problems = check_draft(draft)
    if facts:
        values = {name: e.value for name, e in evidence.items()}
        for text, limit in ((draft.body, BODY_LIMIT), (draft.subject or "", SUBJECT_LIMIT)):
            problems += validate(
                text,
                channel=CHANNEL.value,
                evidence_values=values,
                allowed=allowed,
                max_length=limit,
            )
    return [f"{p.kind}: {p.detail}" for p in problems]


def prepare_bare(template: MessageTemplate, leads: Sequence[Lead]) -> Prepared:
    # Plain text, as the platform renders it (mail goes out as text/plain): no autoescape.
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)  # noqa: S701
    contexts: list[dict[str, Any]] = []
    for lead in leads:
        evidence = evidence_from(lead.observations, now=AT, verified=lead.verified)
        contexts.append(
            {
                "lead": {name: e.value for name, e in evidence.items()},
                "sender": {"name": SENDER.name, "company": SENDER.company},
                "cta": cta_text(CTA, TONE),
                "tone": TONE.value,
                "length": LENGTH.value,
            }
        )
    assert template.subject is not None
    return Prepared(contexts, env.from_string(template.subject), env.from_string(template.body))


def _full_block(
    path: Path,
    template: MessageTemplate,
    leads: Sequence[Lead],
    allowed: Sequence[str],
    rejected: list[int],
) -> None:
    """The platform's path over a block of leads, each stage of each draft timed (a few
    perf_counter calls per draft: well under 1% of it)."""
    now = time.perf_counter
    latencies = path.latencies
    evidence_s = compose_s = validate_s = 0.0
    bad = 0
    for lead in leads:
        t0 = now()
        evidence = evidence_from(lead.observations, now=AT, verified=lead.verified)
        t1 = now()
        draft = compose(
            template,
            evidence,
            sender=SENDER,
            channel=CHANNEL,
            tone=TONE,
            length=LENGTH,
            cta=CTA,
            first_message=True,
            now=AT,
        )
        t2 = now()
        problems = check_draft(draft)
        t3 = now()
        bad += bool(problems)
        latencies.append(t3 - t0)
        evidence_s += t1 - t0
        compose_s += t2 - t1
        validate_s += t3 - t2
    for stage, seconds in (
        ("evidence_from", evidence_s),
        ("compose", compose_s),
        ("validate", validate_s),
    ):
        path.stages[stage] = path.stages.get(stage, 0.0) + seconds
    rejected.append(bad)


def _bare_block(prepared: Prepared, contexts: Sequence[dict[str, Any]]) -> None:
    subject, body = prepared.subject.render, prepared.body.render
    for context in contexts:
        subject(context)
        body(context)


@dataclass
class Machine:
    """The machine during the rounds (both paths interleaved, so they share it): the worst
    round. A 2 ms block is too short for /proc's 10 ms ticks, hence per round, not per path."""

    cpu_share: float = 1.0  # of one core used by this process (below 1: it waited)
    foreign_load: float = 0.0  # cores used by other processes
    io_stall: float = 0.0  # share of the time some task waited for the disk

    def add_round(self, meter: CpuMeter, seconds: float) -> None:
        self.cpu_share = min(self.cpu_share, meter.used.get("bench", 0.0) / seconds)
        self.foreign_load = max(self.foreign_load, meter.used.get("foreign", 0.0) / seconds)
        self.io_stall = max(self.io_stall, meter.io_stalled / seconds)


@dataclass
class Result:
    full: Path
    bare: Path
    machine: Machine
    rejected: int
    gaps: int
    sample: str
    fact_checked_us: float  # one draft with the LLM path's fact check added, warm-up sample


def measure(
    leads: Sequence[Lead],
    *,
    rounds: int,
    budget: float = SECTION_BUDGET,
    profile: cProfile.Profile | None = None,
) -> Result:
    template = default_template(CHANNEL, TONE)
    allowed = _allowed()
    prepared = prepare_bare(template, leads)

    # Warm-up (not timed): the template caches, and proof that the measured path succeeds.
    for lead in leads[:WARMUP_LEADS]:
        problems = draft_one(template, lead, allowed)
        assert not problems, problems
    # The fact check an LLM's text gets passes on template drafts too; what it would cost.
    started = time.perf_counter()
    for lead in leads[:WARMUP_LEADS]:
        problems = draft_one(template, lead, allowed, facts=True)
        assert not problems, problems
    fact_checked_us = (time.perf_counter() - started) / WARMUP_LEADS * 1e6
    for context in prepared.contexts[:WARMUP_LEADS]:
        prepared.subject.render(context)
        prepared.body.render(context)
    evidence = evidence_from(leads[0].observations, now=AT, verified=leads[0].verified)
    draft = compose(
        template,
        evidence,
        sender=SENDER,
        channel=CHANNEL,
        tone=TONE,
        length=LENGTH,
        cta=CTA,
        first_message=True,
        now=AT,
    )
    # The same template and values: the bare text is the draft's writer part, give or take
    # what the platform tidies (whitespace, "Inc.." before a full stop).
    bare_text, body = (
        " ".join(text.split()).replace("..", ".")
        for text in (prepared.body.render(prepared.contexts[0]), draft.body)
    )
    assert bare_text in body, (bare_text, body)
    sample = f"Subject: {draft.subject}\n{draft.body}"

    full = Path("template draft: evidence + sandboxed compose + checks", len(leads))
    bare = Path("bare Jinja2 render, same template (subject + body)", len(leads))
    machine = Machine()
    meter = CpuMeter({"bench": [os.getpid()]})
    rejected: list[int] = []
    deadline = time.monotonic() + budget
    for number in range(rounds):
        if number >= 2 and time.monotonic() > deadline:
            break
        gc.collect()
        meter.start()
        started = time.perf_counter()
        # Block by block, alternating which path goes first, so both see the same machine.
        for block, start in enumerate(range(0, len(leads), BLOCK)):
            chunk, contexts = leads[start : start + BLOCK], prepared.contexts[start : start + BLOCK]
            steps: list[tuple[Path, Callable[[], None]]] = [
                (full, partial(_full_block, full, template, chunk, allowed, rejected)),
                (bare, partial(_bare_block, prepared, contexts)),
            ]
            for path, work in steps if (number + block) % 2 == 0 else reversed(steps):
                path.timed(work)
        seconds = time.perf_counter() - started
        meter.stop()
        machine.add_round(meter, seconds)
        full.end_round()
        bare.end_round()

    if profile is not None:  # after the figures, so they stay unskewed
        profile.enable()
        for lead in leads:
            draft_one(template, lead, allowed)
        profile.disable()

    gaps = sum("company" not in context["lead"] for context in prepared.contexts)
    return Result(full, bare, machine, sum(rejected), gaps, sample, fact_checked_us)


# --- report --------------------------------------------------------------------------------


def run(
    *,
    leads: int = LEADS,
    rounds: int = ROUNDS,
    budget: float = SECTION_BUDGET,
    profile: cProfile.Profile | None = None,
) -> list[Figure]:
    heading("drafting: template drafts beside bare Jinja2 rendering of the same template")
    settle_process()  # the start-up every worker runs before its first job
    started = time.perf_counter()
    made = make_leads(leads)
    setup = time.perf_counter() - started
    observations = sum(len(lead.observations) for lead in made)
    result = measure(made, rounds=rounds, budget=budget, profile=profile)
    full, bare = result.full, result.bare
    print(
        f"{leads:,} distinct leads, {observations / leads:.1f} observations each "
        f"(built in {setup:.2f}s); e-mail, {TONE} tone, {LENGTH} length, cta {CTA}; "
        "one process, one thread, no database"
    )
    headers = [
        "path",
        "rounds x msgs",
        "best s",
        "msgs/s",
        "median msgs/s",
        "vs bare",
        "µs/msg",
    ]
    print(table(headers, [full.row(bare), bare.row(bare)]))
    machine = result.machine
    print(
        f"machine, worst round: our CPU {machine.cpu_share:.2f} of a core, foreign load "
        f"{machine.foreign_load:.2f} cores, io stall {machine.io_stall:.0%}"
    )
    drafts = len(full.latencies)
    stages = ", ".join(
        f"{name} {seconds / drafts * 1e6:.0f} µs" for name, seconds in full.stages.items()
    )
    print(f"per draft, mean over {drafts:,}: {stages}")
    print(
        f"one draft: p50 {full.us(0.50):.0f} µs, p99 {full.us(0.99):.0f} µs, "
        f"max {max(full.latencies, default=0.0) * 1e6:.0f} µs"
    )
    print(
        f"validation: {drafts - result.rejected:,} of {drafts:,} drafts passed; "
        f"{result.gaps:,} leads without a company (a visible gap)"
    )
    print(
        f"with the fact check an LLM draft gets (not needed for template drafts): "
        f"≈ {result.fact_checked_us:.0f} µs per draft, ≈ "
        f"{1e6 / result.fact_checked_us / bare.rate:.1%} of bare rendering"
    )
    met = "met" if full.rate >= TARGET_RATIO * bare.rate else "NOT met"
    print(
        f"ratio {full.rate / bare.rate:.1%} of bare rendering (target ≥ {TARGET_RATIO:.0%}: {met})"
    )
    print("sample draft (first lead):\n  " + result.sample.replace("\n", "\n  "))
    notes = [
        f"one draft p50 {full.us(0.50):.0f} µs, p99 {full.us(0.99):.0f} µs",
        "per draft " + stages,
        f"{leads:,} leads, best of {len(full.round_seconds)} rounds",
        f"with the LLM path's fact check ≈ {result.fact_checked_us:.0f} µs per draft",
    ]
    if result.rejected:  # the first WARMUP_LEADS are asserted; the rest only reported
        notes.append(f"{result.rejected:,} drafts REJECTED by validation")
    return [
        Figure(
            name="template drafts (evidence + render + validation)",
            value=full.rate,
            raw_name="bare Jinja2 render, same template",
            raw_value=bare.rate,
            unit="msgs/s",
            target_ratio=TARGET_RATIO,
            notes=notes,
            foreign_load=machine.foreign_load,
            io_stall=machine.io_stall,
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--leads", type=int, default=LEADS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after measuring, profile one more pass of template drafts with cProfile",
    )
    args = parser.parse_args()
    profile = cProfile.Profile() if args.profile else None
    start_watchdog(120)
    run(leads=args.leads, rounds=args.rounds, budget=60.0, profile=profile)
    if profile is not None:
        heading("drafting profile: one pass of template drafts (cProfile)")
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)
        pstats.Stats(profile).sort_stats("cumulative").print_stats(45)


if __name__ == "__main__":
    main()
