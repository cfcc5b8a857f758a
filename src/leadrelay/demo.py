"""Demo data for a first start: 2 tenants, 3 teams, 6 reps, 20 leads from varied sources, an
active ICP and routing rules — the worker then verifies, scores and routes the leads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.approvals.service import Policy
from leadrelay.capture.cleaning import clean_lead
from leadrelay.capture.intake import CapturePolicy, ingest
from leadrelay.capture.models import (
    Lead,
    LeadStatus,
    LegalBasis,
    Source,
    SourceKind,
    SourceStatus,
)
from leadrelay.compliance.audit import AuditEntry, append_events
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database, all_tenants
from leadrelay.drafting import service as drafting
from leadrelay.drafting.evidence import Channel
from leadrelay.identity import service as identity
from leadrelay.identity.models import Role
from leadrelay.identity.service import Principal
from leadrelay.routing.models import Rep, RoutingRuleRow, Team
from leadrelay.scoring import service as scoring
from leadrelay.scoring.icp import RuleSetBody

DEMO_PASSWORD = "leadrelay-demo"  # noqa: S105 - printed at start-up, demo tenants only
OFFICE_HOURS = {day: [["09:00", "17:30"]] for day in ("mon", "tue", "wed", "thu", "fri")}


def _rule(
    rule_id: str, label: str, fact: str, op: str, value: object, points: int
) -> dict[str, object]:
    return {
        "id": rule_id,
        "label": label,
        "when": [{"fact": fact, "op": op, "value": value}],
        "points": points,
    }


DEMO_ICP = RuleSetBody.model_validate(
    {
        "threshold": 60,
        "rules": [
            _rule("verified-email", "E-mail verified", "email_verified", "equals", True, 30),
            # Offline (no DNS), a well-formed address on a real domain rates 0.5: unknown.
            _rule("plausible-email", "E-mail plausible", "email_confidence", "gte", 0.5, 15),
            _rule("verified-phone", "Phone verified", "phone_verified", "equals", True, 20),
            _rule("company", "Company known", "company", "exists", True, 25),
            _rule("partner", "Partner referral", "source_kind", "equals", "vetted_provider", 15),
            _rule("free-mail", "Personal mailbox", "flags", "contains", "free_email", -25),
            _rule("role-account", "Role account (info@…)", "flags", "contains", "role_email", -20),
        ],
    }
)


@dataclass
class DemoTenant:
    slug: str
    name: str
    country: str
    teams: dict[str, list[tuple[str, str, list[str]]]]  # team -> [(rep, tz, territories)]
    leads: list[tuple[str, str, str, str, str]]  # name, email, phone, company, source key
    users: list[tuple[str, Role]] = field(default_factory=list)
    # Routing rules in order: (name, conditions, team); the first team is the fallback of
    # the others, so a lead no rule or rep takes still finds someone when one is free.
    rules: list[tuple[str, list[dict[str, object]], str]] = field(default_factory=list)
    postal_address: str = ""  # the sender's, printed under every message


ASSESSMENT = (
    "Visitors of our trade-show booth handed over business cards to be contacted about our "
    "products; contacting them at their business address is expected and easy to refuse."
)

SOURCES = {
    "meta": ("Meta Lead Ads", SourceKind.SIGNED_WEBHOOK, LegalBasis.CONSENT),
    "web": ("Website form", SourceKind.OFFICIAL_API, LegalBasis.CONSENT),
    "csv": ("Trade show list (CSV)", SourceKind.CSV_UPLOAD, LegalBasis.LEGITIMATE_INTEREST),
    "partner": ("Partner referrals", SourceKind.VETTED_PROVIDER, LegalBasis.CONTRACT),
}

TENANTS = [
    DemoTenant(
        slug="acme",
        name="Acme Realty",
        country="US",
        postal_address="500 Market Street, Suite 200\nSan Francisco, CA 94105",
        teams={
            "West Coast": [
                ("Maya Chen", "America/Los_Angeles", ["US"]),
                ("Luis Ortega", "America/Los_Angeles", ["US"]),
            ],
            "East Coast": [
                ("Priya Nair", "America/New_York", ["US"]),
                ("Tom Becker", "America/New_York", ["US"]),
            ],
        },
        leads=[
            ("Ava Thompson", "ava.thompson@brightpath.io", "+1 415 555 0101", "BrightPath", "meta"),
            ("Noah Patel", "noah@quillworks.com", "(212) 555-0142", "Quillworks", "web"),
            ("Emma Rossi", "emma.rossi@harborview.co", "+1 617 555 0199", "Harborview", "csv"),
            ("Liam Walker", "liam@northgate.dev", "+1 503 555 0123", "Northgate", "partner"),
            ("Olivia Kim", "olivia.kim@gmail.com", "+1 206 555 0177", "", "meta"),
            ("Ethan Brooks", "ethan@summitridge.com", "+1 646 555 0110", "Summit Ridge", "web"),
            ("Sophia Garcia", "sophia@lumen-labs.io", "+1 415 555 0135", "Lumen Labs", "csv"),
            ("Mason Lee", "mason.lee@bayline.com", "+1 973 555 0188", "Bayline", "partner"),
            ("Isabella Chen", "isabella@redwoodhq.com", "+1 408 555 0164", "Redwood HQ", "meta"),
            ("James Wilson", "info@oakmont.org", "+1 718 555 0102", "Oakmont", "web"),
            ("Mia Johnson", "mia@crescent.ai", "+1 510 555 0117", "Crescent AI", "csv"),
            ("Lucas Martin", "lucas@pinecrest.net", "+1 781 555 0191", "Pinecrest", "meta"),
        ],
        rules=[
            (
                "Partner referrals go East",
                [{"fact": "source_kind", "op": "equals", "value": "vetted_provider"}],
                "East Coast",
            ),
            ("Everyone else", [], "West Coast"),
        ],
        users=[
            ("owner@acme.test", Role.OWNER),
            ("manager@acme.test", Role.MANAGER),
            ("reviewer@acme.test", Role.REVIEWER),
            ("operator@acme.test", Role.OPERATOR),
        ],
    ),
    DemoTenant(
        slug="northwind",
        name="Northwind Solar",
        country="GB",
        postal_address="12 Wharf Road\nLondon N1 7GR",
        teams={
            "UK & Ireland": [
                ("Oliver Hughes", "Europe/London", ["GB", "IE"]),
                ("Amelia Clarke", "Europe/London", ["GB"]),
            ],
        },
        leads=[
            ("Harry Evans", "harry@greenleaf.co.uk", "020 7946 0958", "Greenleaf", "web"),
            ("Isla Murphy", "isla.murphy@sunrise.ie", "+353 1 555 0142", "Sunrise Energy", "meta"),
            ("George Shaw", "george@kestrel.co.uk", "0161 496 0735", "Kestrel", "csv"),
            ("Poppy Reid", "poppy@brightwatt.com", "+44 131 496 0219", "BrightWatt", "partner"),
            ("Jack Turner", "jack.turner@outlook.com", "07700 900123", "", "meta"),
            ("Freya Ward", "freya@solisgrid.co.uk", "0117 496 0412", "Solis Grid", "web"),
            ("Oscar Bell", "oscar@tidewater.org.uk", "029 2018 0723", "Tidewater", "csv"),
            ("Lily Foster", "lily@hearthstone.co.uk", "0113 496 0550", "Hearthstone", "partner"),
        ],
        rules=[("All of the UK and Ireland", [], "UK & Ireland")],
        users=[
            ("owner@northwind.test", Role.OWNER),
            ("rep@northwind.test", Role.REP),
        ],
    ),
]


@dataclass(frozen=True)
class DemoLogin:
    tenant: str
    email: str
    role: str
    password: str = DEMO_PASSWORD


async def demo_loaded(db: Database) -> bool:
    async with db.session() as session:
        return bool(await all_tenants(session))


async def load_demo(db: Database) -> list[DemoLogin]:
    """Load the demo tenants unless any tenant exists; returns the logins to print."""
    if await demo_loaded(db):
        return demo_logins()
    now = utcnow()
    for spec in TENANTS:
        async with db.session() as session:
            tenant = await identity.create_tenant(session, name=spec.name, slug=spec.slug, now=now)
            actor = identity.system_principal(tenant.id)
            for email, role in spec.users:
                await identity.create_user(
                    session,
                    actor,
                    email=email,
                    name=email.split("@")[0].title(),
                    role=role,
                    password=DEMO_PASSWORD,
                    now=now,
                )
            sources: dict[str, Source] = {}
            for key, (name, kind, basis) in SOURCES.items():
                sources[key] = Source(
                    tenant_id=tenant.id,
                    name=name,
                    kind=kind,
                    legal_basis=basis,
                    status=SourceStatus.VETTED,
                    assessment=ASSESSMENT if basis == LegalBasis.LEGITIMATE_INTEREST else "",
                    default_country=spec.country,
                )
                session.add(sources[key])
            teams: dict[str, Team] = {}
            for team_name, reps in spec.teams.items():
                team = Team(tenant_id=tenant.id, name=team_name, sla_minutes=60)
                session.add(team)
                await session.flush()
                teams[team_name] = team
                for n, (rep_name, tz, territories) in enumerate(reps):
                    session.add(
                        Rep(
                            tenant_id=tenant.id,
                            team_id=team.id,
                            name=rep_name,
                            timezone=tz,
                            territories=territories,
                            # Every second rep keeps office hours, so traces show them.
                            working_hours=OFFICE_HOURS if n % 2 else None,
                        )
                    )
            first = next(iter(teams.values()))
            for team in teams.values():
                if team is not first:
                    team.fallback_team_id = first.id
            for position, (rule_name, conditions, team_name) in enumerate(spec.rules):
                session.add(
                    RoutingRuleRow(
                        tenant_id=tenant.id,
                        name=rule_name,
                        position=position,
                        when=conditions,
                        team_id=teams[team_name].id,
                    )
                )
            await session.flush()
            # The ICP is active before the leads arrive: the jobs that follow intake verify,
            # score and route them, as they would any lead.
            await scoring.activate(
                session,
                actor,
                (await scoring.create_draft(session, actor, DEMO_ICP, now=now, note="Demo")).id,
                now=now,
            )
            # Demo leads take the same path as every other lead: normalized, matched, with
            # provenance, `lead.created` events and an audit entry per source.
            for source_key, source in sources.items():
                rows: list[Mapping[str, str | None]] = [
                    {"full_name": name, "email": email, "phone": phone, "company": company}
                    for name, email, phone, company, key in spec.leads
                    if key == source_key
                ]
                await ingest(
                    session,
                    source,
                    rows,
                    normalize=clean_lead,
                    policy=CapturePolicy(),
                    now=now,
                )
            await _demo_drafts(session, actor, spec, now=now)
            await append_events(
                session,
                tenant.id,
                [
                    AuditEntry(
                        "demo.loaded", data={"leads": len(spec.leads), "teams": len(spec.teams)}
                    )
                ],
                now=now,
            )
    return demo_logins()


async def _demo_drafts(
    session: AsyncSession, actor: Principal, spec: DemoTenant, *, now: datetime
) -> None:
    """The sender identity, and three e-mail drafts waiting in the review queue."""
    await drafting.set_sender(
        session,
        actor,
        {"name": "Demo Team", "company": spec.name, "postal_address": spec.postal_address},
        now=now,
    )
    leads = await session.scalars(
        select(Lead.id)
        .where(Lead.status == LeadStatus.NEW, Lead.email.is_not(None), Lead.company.is_not(None))
        .order_by(Lead.created_at, Lead.id)
        .limit(3)
    )
    for lead_id in leads:
        await drafting.generate(
            session,
            actor,
            drafting.DraftRequest(lead_id=lead_id, channel=Channel.EMAIL, submit=True),
            drafter=None,
            policy=Policy(),
            now=now,
        )


def demo_logins() -> list[DemoLogin]:
    return [
        DemoLogin(tenant=t.slug, email=email, role=role.value)
        for t in TENANTS
        for email, role in t.users
    ]


async def count_demo(db: Database) -> dict[str, int]:
    """Counts across all tenants (each read inside its own tenant context)."""
    totals = {"tenants": 0, "teams": 0, "reps": 0, "leads": 0}
    async with db.session() as session:
        tenants = await all_tenants(session)
    for tenant_id in tenants.values():
        async with db.session(tenant_id) as session:
            totals["tenants"] += 1
            for key, model in (("teams", Team), ("reps", Rep), ("leads", Lead)):
                totals[key] += int(
                    await session.scalar(select(func.count()).select_from(model)) or 0
                )
    return totals
