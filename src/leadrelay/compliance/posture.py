"""The compliance posture snapshot: one tenant's safeguards, each judged pass, warn or fail.

Every item is read from what the tenant has (settings, messages, requests, the audit chain, the
suppression list, its sending domains' DNS) at the moment asked, names the console page where it
is fixed, and says why it got its verdict. Nothing is stored: the snapshot is cheap to redo.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.approvals.service import policy_of
from leadrelay.compliance import domains
from leadrelay.compliance.audit import verify_chain
from leadrelay.compliance.domains import AuthStatus, worst
from leadrelay.compliance.models import AuditEvent, DsarRequest
from leadrelay.core.errors import NotFound
from leadrelay.core.settings import Settings
from leadrelay.drafting.compose import UNSUBSCRIBE_PLACEHOLDER
from leadrelay.identity.models import Tenant
from leadrelay.outreach.models import Message, MessageStatus, Suppression
from leadrelay.outreach.service import outreach_policy

RETENTION_ACTION: Final = "retention.swept"
# A sweep runs daily: one older than this missed a run; older than the second, it is not running.
RETENTION_LATE: Final = timedelta(days=2)
RETENTION_STALE: Final = timedelta(days=7)
# An open request this close to its legal deadline needs attention now.
DSAR_DUE_SOON: Final = timedelta(days=7)
# Below this share of sent e-mail with a visible unsubscribe link, the item fails.
UNSUBSCRIBE_FAIL_BELOW: Final = 0.95

POLICY_URL: Final = "/console/outreach/policy"
APPROVALS_URL: Final = "/console/approvals"
TEMPLATES_URL: Final = "/console/templates"
SENDER_URL: Final = "/console/templates#sender"
AUDIT_URL: Final = "/console/audit"
RETENTION_URL: Final = "/console/retention"
DSAR_URL: Final = "/console/dsar"
SUPPRESSIONS_URL: Final = "/console/suppressions"


@dataclass(frozen=True, slots=True)
class PostureItem:
    key: str
    label: str
    status: AuthStatus
    value: str  # the figure, short
    detail: str  # why this verdict, and what to do
    href: str  # the console page that fixes it


@dataclass(frozen=True, slots=True)
class Posture:
    tenant_id: uuid.UUID
    checked_at: datetime
    items: tuple[PostureItem, ...]

    @property
    def status(self) -> AuthStatus:
        return worst(item.status for item in self.items)


def _dry_run_item(tenant: Tenant, settings: Settings) -> PostureItem:
    view = outreach_policy(tenant, settings)
    if view.tenant_dry_run:
        return PostureItem(
            "dry_run",
            "Dry-run",
            AuthStatus.PASS,
            "dry-run",
            "Every message is decided and recorded exactly as for real; nothing leaves.",
            POLICY_URL,
        )
    if view.forced_by_settings:
        return PostureItem(
            "dry_run",
            "Dry-run",
            AuthStatus.PASS,
            "dry-run (forced by the server)",
            "The workspace allows live sending, but LEADRELAY_DRY_RUN=true keeps it in dry-run.",
            POLICY_URL,
        )
    return PostureItem(
        "dry_run",
        "Dry-run",
        AuthStatus.WARN,
        "live",
        "Approved messages that pass the policy guard are sent for real.",
        POLICY_URL,
    )


def _approval_item(tenant: Tenant, settings: Settings) -> PostureItem:
    policy = policy_of(tenant, default_expiry_days=settings.approval_expiry_days)
    if policy.approval_required and policy.four_eyes:
        return PostureItem(
            "approval",
            "Human approval",
            AuthStatus.PASS,
            "required, four eyes",
            "Every message needs a reviewer's approval, never its author's own.",
            APPROVALS_URL,
        )
    if policy.approval_required:
        return PostureItem(
            "approval",
            "Human approval",
            AuthStatus.PASS,
            "required",
            "Every message needs a reviewer's approval (four eyes is off: an author may approve "
            "their own draft).",
            APPROVALS_URL,
        )
    live = not outreach_policy(tenant, settings).dry_run
    return PostureItem(
        "approval",
        "Human approval",
        AuthStatus.FAIL if live else AuthStatus.WARN,
        "off",
        "Drafts go out without a person reading them"
        + (", and sending is live." if live else "; for now only in dry-run."),
        APPROVALS_URL,
    )


async def _unsubscribe_item(session: AsyncSession, tenant_id: uuid.UUID) -> PostureItem:
    has_link = or_(
        Message.body.contains(UNSUBSCRIBE_PLACEHOLDER, autoescape=True),
        Message.body.contains("/unsubscribe/", autoescape=True),
    )
    row = (
        await session.execute(
            select(
                func.count(),
                func.count().filter(has_link),
                func.count().filter(Message.dry_run.is_(True)),
            ).where(
                Message.tenant_id == tenant_id,
                Message.channel == "email",
                Message.status == MessageStatus.SENT,
            )
        )
    ).one()
    sent, covered, dry = int(row[0]), int(row[1]), int(row[2])
    header = "Every e-mail also carries a one-click List-Unsubscribe header, added at sending."
    if sent == 0:
        return PostureItem(
            "unsubscribe",
            "Unsubscribe coverage",
            AuthStatus.PASS,
            "no e-mail sent",
            f"Nothing sent yet. {header}",
            TEMPLATES_URL,
        )
    share = covered / sent
    status = AuthStatus.PASS
    if covered < sent:
        status = AuthStatus.WARN if share >= UNSUBSCRIBE_FAIL_BELOW else AuthStatus.FAIL
    missing = sent - covered
    detail = (
        f"{covered:,} of {sent:,} sent e-mails ({dry:,} in dry-run) show an unsubscribe link "
        "in their text."
    )
    if missing:
        detail += f" {missing:,} do not: check the templates' footer."
    return PostureItem(
        "unsubscribe",
        "Unsubscribe coverage",
        status,
        f"{share:.1%}",
        f"{detail} {header}",
        TEMPLATES_URL,
    )


def _age(delta: timedelta) -> str:
    days = delta.days
    if days >= 1:
        return f"{days} day{'s' if days != 1 else ''}"
    hours = int(delta.total_seconds() // 3600)
    return f"{hours} hour{'s' if hours != 1 else ''}"


async def _dsar_item(session: AsyncSession, tenant_id: uuid.UUID, now: datetime) -> PostureItem:
    row = (
        await session.execute(
            select(
                func.count(),
                func.min(DsarRequest.requested_at),
                func.min(DsarRequest.due_at),
                func.count().filter(DsarRequest.due_at < now),
            ).where(DsarRequest.tenant_id == tenant_id, DsarRequest.status == "open")
        )
    ).one()
    count, oldest, first_due, overdue = int(row[0]), row[1], row[2], int(row[3])
    if count == 0:
        return PostureItem(
            "dsar",
            "Data-subject requests",
            AuthStatus.PASS,
            "none open",
            "Every access and erasure request has been answered.",
            DSAR_URL,
        )
    age = f"{count:,} open, the oldest {_age(now - oldest)} old"
    if overdue:
        return PostureItem(
            "dsar",
            "Data-subject requests",
            AuthStatus.FAIL,
            f"{overdue:,} overdue",
            f"{age}; {overdue:,} past the legal deadline.",
            DSAR_URL,
        )
    soon = first_due - now < DSAR_DUE_SOON
    return PostureItem(
        "dsar",
        "Data-subject requests",
        AuthStatus.WARN if soon else AuthStatus.PASS,
        f"{count:,} open",
        f"{age}; the next deadline is in {_age(first_due - now)}.",
        DSAR_URL,
    )


async def _retention_item(
    session: AsyncSession, tenant_id: uuid.UUID, now: datetime
) -> PostureItem:
    last = await session.scalar(
        select(func.max(AuditEvent.occurred_at)).where(
            AuditEvent.tenant_id == tenant_id, AuditEvent.action == RETENTION_ACTION
        )
    )
    if last is None:
        return PostureItem(
            "retention",
            "Retention",
            AuthStatus.WARN,
            "never ran",
            "No retention sweep is in the audit trail: old records are kept beyond their time.",
            RETENTION_URL,
        )
    age = now - last
    status = AuthStatus.PASS
    if age > RETENTION_STALE:
        status = AuthStatus.FAIL
    elif age > RETENTION_LATE:
        status = AuthStatus.WARN
    return PostureItem(
        "retention",
        "Retention",
        status,
        f"{_age(age)} ago",
        f"The last sweep ran at {last:%Y-%m-%d %H:%M} UTC; sweeps are due daily.",
        RETENTION_URL,
    )


async def _audit_item(session: AsyncSession, tenant_id: uuid.UUID) -> PostureItem:
    report = await verify_chain(session, tenant_id)
    if report.ok:
        return PostureItem(
            "audit_chain",
            "Audit chain",
            AuthStatus.PASS,
            "verified",
            f"{report.checked:,} links recomputed from the checkpoint to the head; none differs.",
            AUDIT_URL,
        )
    return PostureItem(
        "audit_chain",
        "Audit chain",
        AuthStatus.FAIL,
        "broken",
        f"The chain breaks at link {report.first_bad_seq}: {report.reason}.",
        AUDIT_URL,
    )


async def _domains_item(tenant: Tenant, settings: Settings, now: datetime) -> PostureItem:
    reports = await domains.check_sending_domains(tenant, settings, now=now)
    if not reports:
        return PostureItem(
            "domains",
            "Sending domains",
            AuthStatus.WARN,
            "none set",
            "No sender e-mail is set, so no domain can be checked.",
            SENDER_URL,
        )
    status = worst(r.status for r in reports)
    parts = [
        f"{r.domain}: SPF {r.spf.status}, DKIM {r.dkim.status}, DMARC {r.dmarc.status}"
        for r in reports
    ]
    problems = [p for r in reports for p in r.problems()]
    detail = "; ".join(parts) + "."
    if problems:
        detail += " " + "; ".join(problems) + "."
    return PostureItem(
        "domains",
        "Sending domains",
        status,
        ", ".join(r.domain for r in reports),
        detail,
        POLICY_URL,
    )


async def _suppression_item(session: AsyncSession, tenant_id: uuid.UUID) -> PostureItem:
    size = int(
        await session.scalar(
            select(func.count()).select_from(Suppression).where(Suppression.tenant_id == tenant_id)
        )
        or 0
    )
    sent_live = await session.scalar(
        select(Message.id)
        .where(
            Message.tenant_id == tenant_id,
            Message.status == MessageStatus.SENT,
            Message.dry_run.is_(False),
        )
        .limit(1)
    )
    if size == 0 and sent_live is not None:
        return PostureItem(
            "suppression",
            "Suppression list",
            AuthStatus.WARN,
            "empty",
            "Messages have gone out for real but nobody is suppressed: check that opt-outs and "
            "bounces are being recorded.",
            SUPPRESSIONS_URL,
        )
    return PostureItem(
        "suppression",
        "Suppression list",
        AuthStatus.PASS,
        f"{size:,} {'entry' if size == 1 else 'entries'}",
        "Opt-outs, bounces and complaints, kept as keyed hashes that outlive erasure.",
        SUPPRESSIONS_URL,
    )


async def compliance_posture(
    session: AsyncSession, tenant_id: uuid.UUID, settings: Settings, *, now: datetime
) -> Posture:
    """The snapshot of `tenant_id` (the session is bound to it; RLS is the second lock)."""
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound("The tenant does not exist.")
    items = (
        _dry_run_item(tenant, settings),
        _approval_item(tenant, settings),
        await _unsubscribe_item(session, tenant_id),
        await _dsar_item(session, tenant_id, now),
        await _retention_item(session, tenant_id, now),
        await _audit_item(session, tenant_id),
        await _domains_item(tenant, settings, now),
        await _suppression_item(session, tenant_id),
    )
    return Posture(tenant_id, now, items)
