"""The send guard against every bypass we know: no approval, edit after approval, a replayed
approval, another tenant's approval, an expired or revoked one, text swapped at the last
moment, a lead that may no longer be contacted — and the policy switches around it."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from leadrelay.approvals import service
from leadrelay.approvals.models import Draft, DraftStatus
from leadrelay.capture.models import Lead
from leadrelay.compliance.models import AuditEvent
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database
from leadrelay.identity.models import Role
from leadrelay.identity.service import Principal, permissions_for
from tests.factories import TenantCtx, TenantFactory
from tests.routing.test_routing_api import add_leads

SUBJECT = "Quick question about Navy Labs"
BODY = "Hi Grace,\n\nWould a short call next week help?\n\nUnsubscribe: {{unsubscribe_url}}"


def person(tenant: TenantCtx, name: str, role: Role = Role.MANAGER) -> Principal:
    return Principal(tenant.id, "user", uuid.uuid4(), name, role, permissions_for(role))


async def make_draft(
    db: Database, tenant: TenantCtx, author: Principal, body: str = BODY
) -> uuid.UUID:
    lead_id = (await add_leads(db, tenant, 1))[0]
    async with db.session(tenant.id) as session:
        draft = Draft(
            tenant_id=tenant.id,
            lead_id=lead_id,
            channel="email",
            template="builtin:email-friendly",
            tone="friendly",
            length="medium",
            cta="book_call",
            origin="template",
            status=DraftStatus.DRAFT,
            created_by_type=author.kind,
            created_by_id=str(author.id),
            created_by=author.name,
        )
        session.add(draft)
        await session.flush()
        await service.add_revision(
            session, author, draft, service.RevisionContent(SUBJECT, body), now=utcnow()
        )
        return draft.id


async def submit_and_approve(
    db: Database, tenant: TenantCtx, draft_id: uuid.UUID, reviewer: Principal
) -> uuid.UUID:
    policy = service.Policy()
    async with db.session(tenant.id) as session:
        await service.submit(session, reviewer, draft_id, policy=policy, now=utcnow())
    async with db.session(tenant.id) as session:
        approval = await service.approve(
            session, reviewer, draft_id, revision_number=1, policy=policy, now=utcnow()
        )
        return approval.id


async def handoff(
    db: Database, tenant_id: uuid.UUID, draft_id: uuid.UUID, *, body: str = BODY, days: int = 0
) -> service.SendTicket:
    async with db.session(tenant_id) as session:
        return await service.handoff(
            session,
            tenant_id,
            draft_id,
            subject=SUBJECT,
            body=body,
            now=utcnow() + timedelta(days=days),
        )


@pytest.fixture
async def tenant(tenants: TenantFactory) -> TenantCtx:
    return await tenants.create()


class TestGuard:
    async def test_an_approved_revision_passes_with_its_exact_text(
        self, db: Database, tenant: TenantCtx
    ) -> None:
        author, reviewer = person(tenant, "Rita Rep", Role.REP), person(tenant, "Mona Manager")
        draft_id = await make_draft(db, tenant, author)
        with pytest.raises(service.GuardRefused, match="approval"):
            await handoff(db, tenant.id, draft_id)
        approval_id = await submit_and_approve(db, tenant, draft_id, reviewer)
        ticket = await handoff(db, tenant.id, draft_id)
        assert ticket.approval_id == approval_id
        assert ticket.content_sha256 == service.content_sha256(SUBJECT, BODY)
        assert [c["check"] for c in ticket.checks] == ["content", "approval", "lead"]
        # One character changed at the last moment: refused.
        with pytest.raises(service.GuardRefused, match="content"):
            await handoff(db, tenant.id, draft_id, body=BODY + " ")

    async def test_an_edit_after_approval_needs_a_new_approval(
        self, db: Database, tenant: TenantCtx
    ) -> None:
        author, reviewer = person(tenant, "Rita Rep", Role.REP), person(tenant, "Mona Manager")
        draft_id = await make_draft(db, tenant, author)
        await submit_and_approve(db, tenant, draft_id, reviewer)
        edited = BODY.replace("next week", "tomorrow")
        async with db.session(tenant.id) as session:
            revision = await service.edit(
                session, author, draft_id, subject=SUBJECT, body=edited, now=utcnow()
            )
        assert revision.number == 2
        assert revision.diff is not None
        assert "-Would a short call next week help?" in revision.diff
        assert "+Would a short call tomorrow help?" in revision.diff
        for body in (edited, BODY):  # neither the new text nor the old approved one
            with pytest.raises(service.GuardRefused):
                await handoff(db, tenant.id, draft_id, body=body)
        async with db.session(tenant.id) as session:
            draft = await service.get_draft(session, draft_id)
            assert draft.status == DraftStatus.PENDING
        # Approving revision 1 now is refused: it is not the current one.
        async with db.session(tenant.id) as session:
            with pytest.raises(service.NotReviewable):
                await service.approve(
                    session,
                    reviewer,
                    draft_id,
                    revision_number=1,
                    policy=service.Policy(),
                    now=utcnow(),
                )
        async with db.session(tenant.id) as session:
            await service.approve(
                session,
                reviewer,
                draft_id,
                revision_number=2,
                policy=service.Policy(),
                now=utcnow(),
            )
        assert (await handoff(db, tenant.id, draft_id, body=edited)).approval_id is not None

    async def test_replayed_and_foreign_approvals_do_not_pass(
        self, db: Database, tenants: TenantFactory
    ) -> None:
        a, b = await tenants.create(), await tenants.create()
        reviewer = person(a, "Mona Manager")
        approved = await make_draft(db, a, person(a, "Rita", Role.REP))
        other = await make_draft(db, a, person(a, "Rita", Role.REP))
        await submit_and_approve(db, a, approved, reviewer)
        # The same text under another draft: that draft has no approval of its own.
        with pytest.raises(service.GuardRefused, match="approval"):
            await handoff(db, a.id, other)
        # Tenant B cannot use tenant A's approved draft, even knowing its id.
        with pytest.raises(service.GuardRefused, match="draft"):
            await handoff(db, b.id, approved)
        # Nor claim to be tenant A from B's session.
        async with db.session(b.id) as session:
            with pytest.raises(service.GuardRefused, match="draft"):
                await service.handoff(
                    session, a.id, approved, subject=SUBJECT, body=BODY, now=utcnow()
                )

    async def test_expired_and_revoked_approvals_do_not_pass(
        self, db: Database, tenant: TenantCtx
    ) -> None:
        reviewer = person(tenant, "Mona Manager")
        draft_id = await make_draft(db, tenant, person(tenant, "Rita", Role.REP))
        approval_id = await submit_and_approve(db, tenant, draft_id, reviewer)
        with pytest.raises(service.GuardRefused, match="expired"):
            await handoff(db, tenant.id, draft_id, days=8)
        async with db.session(tenant.id) as session:
            await service.revoke(session, reviewer, approval_id, now=utcnow())
        with pytest.raises(service.GuardRefused, match="revoked"):
            await handoff(db, tenant.id, draft_id)

    async def test_a_lead_that_may_not_be_contacted_blocks_the_message(
        self, db: Database, tenant: TenantCtx
    ) -> None:
        draft_id = await make_draft(db, tenant, person(tenant, "Rita", Role.REP))
        await submit_and_approve(db, tenant, draft_id, person(tenant, "Mona"))
        async with db.session(tenant.id) as session:
            draft = await service.get_draft(session, draft_id)
            lead = await session.get(Lead, draft.lead_id)
            assert lead is not None
            lead.flags = [*lead.flags, "opted_out"]
        with pytest.raises(service.GuardRefused, match="opted_out"):
            await handoff(db, tenant.id, draft_id)


class TestReview:
    async def test_four_eyes_rejects_and_expiry(self, db: Database, tenant: TenantCtx) -> None:
        author = person(tenant, "Mona Manager")
        draft_id = await make_draft(db, tenant, author)
        strict = service.Policy(four_eyes=True)
        async with db.session(tenant.id) as session:
            await service.submit(session, author, draft_id, policy=strict, now=utcnow())
        async with db.session(tenant.id) as session:
            with pytest.raises(service.FourEyes):
                await service.approve(
                    session, author, draft_id, revision_number=None, policy=strict, now=utcnow()
                )
        async with db.session(tenant.id) as session:
            decision = await service.reject(
                session,
                person(tenant, "Rex Reviewer", Role.REVIEWER),
                draft_id,
                reason="Too pushy",
                now=utcnow(),
            )
            assert decision.reason == "Too pushy"
        # Resubmitted, then left pending past the deadline: it expires.
        async with db.session(tenant.id) as session:
            await service.submit(session, author, draft_id, policy=strict, now=utcnow())
        async with db.session(tenant.id) as session:
            assert await service.expire_pending(session, now=utcnow() + timedelta(days=8)) == 1
            draft = await service.get_draft(session, draft_id)
            assert draft.status == DraftStatus.EXPIRED

    async def test_turning_approval_off_needs_the_typed_confirmation(
        self, db: Database, tenant: TenantCtx
    ) -> None:
        admin = person(tenant, "Ada Admin", Role.ADMIN)
        draft_id = await make_draft(db, tenant, person(tenant, "Rita", Role.REP))
        async with db.session(tenant.id) as session:
            with pytest.raises(service.ValidationFailed):
                await service.set_policy(
                    session,
                    admin,
                    approval_required=False,
                    four_eyes=None,
                    confirmation="yes",
                    now=utcnow(),
                )
        async with db.session(tenant.id) as session:
            policy = await service.set_policy(
                session,
                admin,
                approval_required=False,
                four_eyes=None,
                confirmation="Send without approval",
                now=utcnow(),
            )
            assert policy.approval_required is False
        ticket = await handoff(db, tenant.id, draft_id)
        assert ticket.approval_id is None
        assert ticket.checks[1]["detail"] == "not required by policy"
        with pytest.raises(service.GuardRefused, match="content"):  # still the exact text
            await handoff(db, tenant.id, draft_id, body="Something else")
        async with db.session(tenant.id) as session:
            changes = await session.scalar(
                select(func.count()).where(AuditEvent.action == "approvals.policy_changed")
            )
        assert changes == 1
