"""Approvals over HTTP: the queue, decisions with the reviewer recorded, edits as revisions,
bulk approval with four-eyes, revocation, and the policy switch for admins only."""

from __future__ import annotations

import httpx
import pytest

from leadrelay.approvals import service
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database
from leadrelay.identity.models import Role
from tests.approvals.test_guard import BODY, make_draft, person
from tests.factories import TenantCtx, TenantFactory


@pytest.fixture
async def tenant(tenants: TenantFactory) -> TenantCtx:
    return await tenants.create()


async def submitted(db: Database, tenant: TenantCtx, count: int = 1) -> list[str]:
    author = person(tenant, "Rita Rep", Role.REP)
    ids = []
    for _ in range(count):
        draft_id = await make_draft(db, tenant, author)
        async with db.session(tenant.id) as session:
            await service.submit(session, author, draft_id, policy=service.Policy(), now=utcnow())
        ids.append(str(draft_id))
    return ids


class TestReviewApi:
    async def test_queue_approve_reject_edit_revoke(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database
    ) -> None:
        first, second, third = await submitted(db, tenant, 3)
        reviewer = await tenant.headers(Role.REVIEWER)
        queue = (await client.get("/v1/approvals", headers=reviewer)).json()
        assert [item["draft"]["id"] for item in queue] == [first, second, third]
        assert queue[0]["revision"]["body"] == BODY

        stale = await client.post(
            f"/v1/approvals/{first}/approve", json={"revision": 2}, headers=reviewer
        )
        assert stale.status_code == 409
        approved = await client.post(
            f"/v1/approvals/{first}/approve", json={"revision": 1}, headers=reviewer
        )
        assert approved.status_code == 200, approved.text
        assert approved.json()["reviewer"].startswith("lr_")  # the API key that decided
        twice = await client.post(f"/v1/approvals/{first}/approve", json={}, headers=reviewer)
        assert twice.status_code == 409

        rejected = await client.post(
            f"/v1/approvals/{second}/reject", json={"reason": "Wrong tone"}, headers=reviewer
        )
        assert rejected.json()["decision"] == "rejected"
        no_reason = await client.post(f"/v1/approvals/{third}/reject", json={}, headers=reviewer)
        assert no_reason.status_code == 422

        edited = await client.post(
            f"/v1/approvals/{third}/edit",
            json={"subject": "A better subject", "body": "Hi Grace, shall we talk?"},
            headers=reviewer,
        )
        assert edited.status_code == 200, edited.text
        assert edited.json()["number"] == 2
        assert "+Subject: A better subject" in edited.json()["diff"]

        revoked = await client.post(
            f"/v1/approvals/decisions/{approved.json()['id']}/revoke", headers=reviewer
        )
        assert revoked.json()["revoked_at"] is not None
        rep = await tenant.headers(Role.REP)
        forbidden = await client.post(f"/v1/approvals/{third}/approve", json={}, headers=rep)
        assert forbidden.status_code == 403

    async def test_bulk_approval_respects_four_eyes(
        self, client: httpx.AsyncClient, tenant: TenantCtx, db: Database
    ) -> None:
        ids = await submitted(db, tenant, 3)
        admin = await tenant.headers(Role.ADMIN)
        on = await client.patch("/v1/approvals/policy", json={"four_eyes": True}, headers=admin)
        assert on.json()["four_eyes"] is True
        done = await client.post("/v1/approvals/bulk", json={"channel": "email"}, headers=admin)
        assert done.status_code == 200, done.text
        assert sorted(str(i) for i in done.json()["approved"]) == sorted(ids)
        assert done.json()["skipped"] == []


class TestPolicyApi:
    async def test_only_admins_turn_approval_off_and_only_with_the_words(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        manager = await tenant.headers(Role.MANAGER)
        assert (await client.get("/v1/approvals/policy", headers=manager)).json() == {
            "approval_required": True,
            "four_eyes": False,
            "expiry_days": 7,
        }
        denied = await client.patch(
            "/v1/approvals/policy", json={"approval_required": False}, headers=manager
        )
        assert denied.status_code == 403
        admin = await tenant.headers(Role.ADMIN)
        unconfirmed = await client.patch(
            "/v1/approvals/policy", json={"approval_required": False}, headers=admin
        )
        assert unconfirmed.status_code == 422
        assert unconfirmed.json()["errors"][0]["field"] == "confirmation"
        off = await client.patch(
            "/v1/approvals/policy",
            json={"approval_required": False, "confirmation": service.APPROVAL_OFF_CONFIRMATION},
            headers=admin,
        )
        assert off.json()["approval_required"] is False
