"""Identity over HTTP: who am I, users, API keys, the permission matrix on every route, and
tenant isolation (another tenant's ids are a 404, never a 403)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import select

from leadrelay.approvals.api import router as approvals_router
from leadrelay.capture.api import router as capture_router
from leadrelay.capture.provider_api import router as provider_router
from leadrelay.compliance.api import router as audit_router
from leadrelay.compliance.dsar_api import router as dsar_router
from leadrelay.compliance.posture_api import router as posture_router
from leadrelay.compliance.retention_api import router as retention_router
from leadrelay.core.jobs import add_dead_letter
from leadrelay.core.jobs_models import DeadLetter
from leadrelay.drafting.api import router as drafting_router
from leadrelay.identity.api import router as identity_router
from leadrelay.identity.models import ApiKey, Role, User
from leadrelay.identity.permissions import MATRIX, Permission
from leadrelay.inbound.api import router as inbound_router
from leadrelay.ops.api import router as ops_router
from leadrelay.outreach.api import router as outreach_router
from leadrelay.routing.api import router as routing_router
from leadrelay.scoring.api import router as scoring_router
from leadrelay.telemetry.api import router as telemetry_router
from leadrelay.telemetry.inbound_api import router as replies_router
from leadrelay.telemetry.reports_api import router as reports_router
from leadrelay.webhooks.api import router as webhooks_router
from leadrelay.webhooks.models import WebhookEndpoint
from tests.factories import PASSWORD, TenantCtx, TenantFactory

P = Permission
PROBLEM_JSON = "application/problem+json"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def new_email(tenant: TenantCtx) -> str:
    return f"user-{uuid.uuid4().hex[:10]}@{tenant.slug}.example.com"


async def user_id(tenant: TenantCtx, email: str) -> uuid.UUID:
    async with tenant.db.session(tenant.id) as session:
        found = await session.scalar(select(User.id).where(User.email == email))
    assert found is not None
    return found


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert (body["status"], body["code"]) == (status, code)
    assert body["type"].endswith("/" + code)
    return body


class TestMe:
    async def test_describes_the_api_key_and_its_tenant(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create(name="Acme Realty")
        issued = await client.post(
            "/v1/api-keys", json={"name": "crm", "role": "manager"}, headers=await tenant.headers()
        )

        response = await client.get("/v1/me", headers=bearer(issued.json()["key"]))

        assert response.status_code == 200
        assert response.json() == {
            "tenant_id": str(tenant.id),
            "tenant_name": "Acme Realty",
            "kind": "api_key",
            "id": issued.json()["id"],
            "role": "manager",
            "permissions": sorted(p.value for p in MATRIX[Role.MANAGER]),
        }

    async def test_refuses_unknown_and_malformed_keys(self, client: httpx.AsyncClient) -> None:
        for headers in (
            bearer("lr_0000000000.not-a-real-key"),
            bearer("not even shaped like a key"),
            {"authorization": "Basic dXNlcjpwYXNz"},
            {},
        ):
            response = await client.get("/v1/me", headers=headers)
            assert_problem(response, 401, "unauthenticated")
            assert response.headers["www-authenticate"] == "Bearer"

    async def test_accepts_the_x_api_key_header(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        response = await client.get("/v1/me", headers={"x-api-key": await tenant.api_key()})
        assert response.status_code == 200
        assert response.json()["tenant_id"] == str(tenant.id)


class TestUsers:
    async def test_creates_a_user(self, client: httpx.AsyncClient, tenants: TenantFactory) -> None:
        tenant = await tenants.create()
        email = new_email(tenant)

        response = await client.post(
            "/v1/users",
            json={"email": email, "name": "Rita Rep", "role": "rep", "password": PASSWORD},
            headers=await tenant.headers(Role.ADMIN),
        )

        assert response.status_code == 201
        body = response.json()
        assert set(body) == {
            "id",
            "email",
            "name",
            "role",
            "is_active",
            "created_at",
            "last_login_at",
        }
        assert (body["email"], body["name"], body["role"], body["is_active"]) == (
            email,
            "Rita Rep",
            "rep",
            True,
        )
        assert PASSWORD not in response.text
        fetched = await client.get(f"/v1/users/{body['id']}", headers=await tenant.headers())
        assert fetched.json() == body
        listed = await client.get("/v1/users", headers=await tenant.headers(Role.MANAGER))
        assert body in listed.json()

    async def test_refuses_a_duplicate_email_with_409(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        headers = await tenant.headers()
        email = new_email(tenant)
        first = {"email": email, "name": "A", "role": "rep", "password": PASSWORD}
        assert (await client.post("/v1/users", json=first, headers=headers)).status_code == 201

        again = await client.post("/v1/users", json=first, headers=headers)
        other_case = await client.post(
            "/v1/users", json={**first, "email": email.upper()}, headers=headers
        )

        body = assert_problem(again, 409, "email-already-used")
        assert body["detail"] == "A user with this e-mail address already exists."
        assert_problem(other_case, 409, "email-already-used")
        listed = (await client.get("/v1/users", headers=headers)).json()
        assert [u["email"] for u in listed].count(email) == 1

    async def test_refuses_a_weak_password_with_field_errors(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        response = await client.post(
            "/v1/users",
            json={"email": new_email(tenant), "name": "A", "role": "rep", "password": "hunter2"},
            headers=await tenant.headers(),
        )
        body = assert_problem(response, 422, "validation-failed")
        assert [(e["field"], e["location"]) for e in body["errors"]] == [("password", "body")]
        assert "at least 12 characters" in body["errors"][0]["message"]
        assert "hunter2" not in response.text

    async def test_lists_every_bad_field(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        response = await client.post(
            "/v1/users",
            json={"email": "not-an-email", "name": "", "role": "king", "password": "x", "x": 1},
            headers=await tenant.headers(),
        )
        body = assert_problem(response, 422, "validation-failed")
        fields = {e["field"] for e in body["errors"]}
        assert fields == {"email", "name", "role", "password", "x"}
        assert all(e["message"] for e in body["errors"])

    async def test_updates_role_name_and_activity(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        target = await user_id(tenant, await tenant.user(Role.REP))
        headers = await tenant.headers(Role.ADMIN)

        response = await client.patch(
            f"/v1/users/{target}",
            json={"role": "manager", "name": "Promoted", "is_active": False},
            headers=headers,
        )

        assert response.status_code == 200
        assert (response.json()["role"], response.json()["name"]) == ("manager", "Promoted")
        assert response.json()["is_active"] is False
        audit = await client.get("/v1/audit", params={"action": "user.updated"}, headers=headers)
        assert audit.json()[0]["data"] == {
            "role": "manager",
            "is_active": False,
            "name_changed": True,
        }

    async def test_unknown_user_is_404(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        response = await client.get(f"/v1/users/{uuid.uuid4()}", headers=await tenant.headers())
        assert_problem(response, 404, "not-found")
        malformed = await client.get("/v1/users/not-a-uuid", headers=await tenant.headers())
        assert malformed.status_code == 422


class TestGrants:
    async def test_a_manager_cannot_create_users_at_all(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        response = await client.post(
            "/v1/users",
            json={"email": new_email(tenant), "name": "B", "role": "owner", "password": PASSWORD},
            headers=await tenant.headers(Role.MANAGER),
        )
        assert_problem(response, 403, "forbidden")

    async def test_nobody_grants_more_than_they_hold(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        admin = await tenant.headers(Role.ADMIN)
        rep = await user_id(tenant, await tenant.user(Role.REP))

        new_owner = await client.post(
            "/v1/users",
            json={"email": new_email(tenant), "name": "B", "role": "owner", "password": PASSWORD},
            headers=admin,
        )
        promote = await client.patch(f"/v1/users/{rep}", json={"role": "owner"}, headers=admin)
        owner_key = await client.post(
            "/v1/api-keys", json={"name": "k", "role": "owner"}, headers=admin
        )
        admin_key = await client.post(
            "/v1/api-keys", json={"name": "k", "role": "admin"}, headers=admin
        )

        body = assert_problem(new_owner, 403, "cannot-grant-role")
        assert body["detail"] == "you cannot grant or manage the 'owner' role"
        assert_problem(promote, 403, "cannot-grant-role")
        assert_problem(owner_key, 403, "cannot-grant-role")
        assert admin_key.status_code == 201  # equal is fine
        fetched = await client.get(f"/v1/users/{rep}", headers=admin)
        assert fetched.json()["role"] == "rep"

    async def test_admin_cannot_demote_or_deactivate_an_owner(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        admin = await tenant.headers(Role.ADMIN)
        owner = await user_id(tenant, await tenant.user(Role.OWNER))

        demote = await client.patch(f"/v1/users/{owner}", json={"role": "rep"}, headers=admin)
        deactivate = await client.patch(
            f"/v1/users/{owner}", json={"is_active": False}, headers=admin
        )

        assert_problem(demote, 403, "cannot-grant-role")
        assert_problem(deactivate, 403, "cannot-grant-role")
        fetched = (await client.get(f"/v1/users/{owner}", headers=admin)).json()
        assert (fetched["role"], fetched["is_active"]) == ("owner", True)


class TestApiKeys:
    async def test_shows_the_key_once_and_never_lists_it(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        headers = await tenant.headers()

        issued = await client.post(
            "/v1/api-keys", json={"name": "zapier", "role": "rep"}, headers=headers
        )

        assert issued.status_code == 201
        token = issued.json()["key"]
        assert token.startswith(issued.json()["prefix"] + ".")
        listed = await client.get("/v1/api-keys", headers=headers)
        assert token not in listed.text
        assert token.split(".", 1)[1] not in listed.text
        (row,) = [k for k in listed.json() if k["id"] == issued.json()["id"]]
        assert "key" not in row
        assert (row["name"], row["role"], row["prefix"]) == ("zapier", "rep", token.split(".")[0])
        async with tenant.db.session(tenant.id) as session:
            stored = await session.get(ApiKey, uuid.UUID(row["id"]))
        assert stored is not None
        assert token not in (stored.key_hash, stored.prefix)

    async def test_a_new_key_works_and_records_its_last_use(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        headers = await tenant.headers()
        issued = await client.post(
            "/v1/api-keys", json={"name": "ci", "role": "manager"}, headers=headers
        )
        assert issued.json()["last_used_at"] is None

        me = await client.get("/v1/me", headers=bearer(issued.json()["key"]))

        assert me.status_code == 200
        assert me.json()["id"] == issued.json()["id"]
        listed = (await client.get("/v1/api-keys", headers=headers)).json()
        (row,) = [k for k in listed if k["id"] == issued.json()["id"]]
        assert row["last_used_at"] is not None

    async def test_revoking_makes_the_key_401(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        headers = await tenant.headers()
        issued = (
            await client.post("/v1/api-keys", json={"name": "old", "role": "rep"}, headers=headers)
        ).json()

        revoked = await client.delete(f"/v1/api-keys/{issued['id']}", headers=headers)
        again = await client.delete(f"/v1/api-keys/{issued['id']}", headers=headers)
        used = await client.get("/v1/me", headers=bearer(issued["key"]))

        assert revoked.status_code == 200
        assert revoked.json()["revoked_at"] is not None
        assert again.json()["revoked_at"] == revoked.json()["revoked_at"]  # idempotent
        body = assert_problem(used, 401, "unauthenticated")
        assert body["detail"] == "invalid or revoked API key"
        assert used.headers["www-authenticate"] == "Bearer"
        actions = [
            e["action"]
            for e in (
                await client.get("/v1/audit", params={"target_id": issued["id"]}, headers=headers)
            ).json()
        ]
        assert actions == ["api_key.revoked", "api_key.created"]

    async def test_a_scoped_key_gets_only_its_scopes(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        issued = await client.post(
            "/v1/api-keys",
            json={"name": "reader", "role": "admin", "scopes": ["users:read"]},
            headers=await tenant.headers(),
        )
        assert issued.json()["scopes"] == ["users:read"]
        scoped = bearer(issued.json()["key"])

        me = await client.get("/v1/me", headers=scoped)
        read = await client.get("/v1/users", headers=scoped)
        create = await client.post(
            "/v1/users",
            json={"email": new_email(tenant), "name": "N", "role": "rep", "password": PASSWORD},
            headers=scoped,
        )
        audit = await client.get("/v1/audit", headers=scoped)

        assert me.json()["permissions"] == ["users:read"]
        assert read.status_code == 200
        body = assert_problem(create, 403, "forbidden")
        assert body["detail"] == "this action needs the 'users:manage' permission"
        assert_problem(audit, 403, "forbidden")

    async def test_a_scoped_key_cannot_mint_a_broader_key(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        scoped = await tenant.api_key(Role.OWNER, scopes=["api_keys:manage"])
        response = await client.post(
            "/v1/api-keys", json={"name": "escalate", "role": "owner"}, headers=bearer(scoped)
        )
        assert_problem(response, 403, "cannot-grant-role")

    async def test_refuses_unknown_scopes(
        self, client: httpx.AsyncClient, tenants: TenantFactory
    ) -> None:
        tenant = await tenants.create()
        response = await client.post(
            "/v1/api-keys",
            json={"name": "x", "role": "rep", "scopes": ["everything:please"]},
            headers=await tenant.headers(),
        )
        body = assert_problem(response, 422, "validation-failed")
        assert body["errors"][0]["field"] == "scopes.0"


# Every permission-checked route, with the permission it needs. `{id}` is a random id: a role
# holding the permission then gets a 404 (or a 422 for an empty body), never a 403.
ROUTES: list[tuple[str, str, Permission]] = [
    ("GET", "/v1/users", P.USERS_READ),
    ("POST", "/v1/users", P.USERS_MANAGE),
    ("GET", "/v1/users/{id}", P.USERS_READ),
    ("PATCH", "/v1/users/{id}", P.USERS_MANAGE),
    ("GET", "/v1/api-keys", P.API_KEYS_MANAGE),
    ("POST", "/v1/api-keys", P.API_KEYS_MANAGE),
    ("DELETE", "/v1/api-keys/{id}", P.API_KEYS_MANAGE),
    ("GET", "/v1/audit", P.AUDIT_READ),
    ("GET", "/v1/audit/export.csv", P.AUDIT_EXPORT),
    ("GET", "/v1/audit/verify", P.AUDIT_READ),
    ("GET", "/v1/compliance/posture", P.COMPLIANCE_READ),
    ("GET", "/v1/compliance/domains", P.COMPLIANCE_READ),
    ("GET", "/v1/dead-letters", P.DEAD_LETTERS_READ),
    ("GET", "/v1/dead-letters/{id}", P.DEAD_LETTERS_READ),
    ("POST", "/v1/dead-letters/{id}/replay", P.DEAD_LETTERS_REPLAY),
    ("GET", "/v1/webhook-endpoints", P.WEBHOOKS_READ),
    ("POST", "/v1/webhook-endpoints", P.WEBHOOKS_MANAGE),
    ("GET", "/v1/webhook-endpoints/{id}", P.WEBHOOKS_READ),
    ("PATCH", "/v1/webhook-endpoints/{id}", P.WEBHOOKS_MANAGE),
    ("GET", "/v1/webhook-endpoints/{id}/secret", P.WEBHOOKS_MANAGE),
    ("POST", "/v1/webhook-endpoints/{id}/rotate-secret", P.WEBHOOKS_MANAGE),
    ("GET", "/v1/webhook-endpoints/{id}/deliveries", P.WEBHOOKS_READ),
    ("GET", "/v1/webhook-endpoints/{id}/deliveries/{delivery}/attempts", P.WEBHOOKS_READ),
    ("GET", "/v1/inbound-endpoints", P.WEBHOOKS_READ),
    ("POST", "/v1/inbound-endpoints", P.WEBHOOKS_MANAGE),
    ("GET", "/v1/sources", P.SOURCES_READ),
    ("POST", "/v1/sources", P.SOURCES_MANAGE),
    ("GET", "/v1/sources/{id}", P.SOURCES_READ),
    ("PATCH", "/v1/sources/{id}", P.SOURCES_MANAGE),
    ("PUT", "/v1/sources/{id}/provider-config", P.SOURCES_MANAGE),
    ("GET", "/v1/capture/policy", P.SOURCES_READ),
    ("PATCH", "/v1/capture/policy", P.SOURCES_MANAGE),
    ("GET", "/v1/leads", P.LEADS_READ),
    ("POST", "/v1/leads", P.LEADS_WRITE),
    ("POST", "/v1/leads/batch", P.LEADS_WRITE),
    ("GET", "/v1/leads/{id}", P.LEADS_READ),
    ("GET", "/v1/leads/{id}/score", P.LEADS_READ),
    ("GET", "/v1/scoring/versions", P.SCORING_READ),
    ("POST", "/v1/scoring/versions", P.SCORING_MANAGE),
    ("GET", "/v1/scoring/versions/{id}", P.SCORING_READ),
    ("PUT", "/v1/scoring/versions/{id}", P.SCORING_MANAGE),
    ("POST", "/v1/scoring/versions/{id}/activate", P.SCORING_MANAGE),
    ("GET", "/v1/scoring/versions/{id}/quality", P.SCORING_READ),
    ("POST", "/v1/scoring/versions/{id}/suggest", P.SCORING_MANAGE),
    ("POST", "/v1/scoring/try", P.SCORING_READ),
    ("GET", "/v1/runs/{id}", P.SCORING_READ),
    ("POST", "/v1/outcomes", P.SCORING_MANAGE),
    ("POST", "/v1/outcomes/import", P.SCORING_MANAGE),
    ("PUT", "/v1/crm/hubspot", P.SCORING_MANAGE),
    ("GET", "/v1/crm/hubspot", P.SCORING_READ),
    ("POST", "/v1/crm/hubspot/sync", P.SCORING_MANAGE),
    ("GET", "/v1/teams", P.ROUTING_READ),
    ("POST", "/v1/teams", P.ROUTING_MANAGE),
    ("PATCH", "/v1/teams/{id}", P.ROUTING_MANAGE),
    ("GET", "/v1/reps", P.ROUTING_READ),
    ("POST", "/v1/reps", P.ROUTING_MANAGE),
    ("PATCH", "/v1/reps/{id}", P.ROUTING_MANAGE),
    ("POST", "/v1/reps/{id}/time-off", P.ROUTING_MANAGE),
    ("GET", "/v1/routing/rules", P.ROUTING_READ),
    ("POST", "/v1/routing/rules", P.ROUTING_MANAGE),
    ("PUT", "/v1/routing/rules/{id}", P.ROUTING_MANAGE),
    ("DELETE", "/v1/routing/rules/{id}", P.ROUTING_MANAGE),
    ("POST", "/v1/routing/simulate", P.ROUTING_READ),
    ("GET", "/v1/routing/queue", P.ROUTING_READ),
    ("GET", "/v1/routing/sla", P.ROUTING_READ),
    ("GET", "/v1/leads/{id}/assignment", P.LEADS_READ),
    ("POST", "/v1/leads/{id}/route", P.ROUTING_MANAGE),
    ("POST", "/v1/leads/{id}/touch", P.LEADS_WRITE),
    ("GET", "/v1/approvals", P.DRAFTS_READ),
    ("POST", "/v1/approvals/{id}/approve", P.APPROVALS_REVIEW),
    ("POST", "/v1/approvals/{id}/reject", P.APPROVALS_REVIEW),
    ("POST", "/v1/approvals/{id}/edit", P.APPROVALS_REVIEW),
    ("POST", "/v1/approvals/bulk", P.APPROVALS_REVIEW),
    ("POST", "/v1/approvals/decisions/{id}/revoke", P.APPROVALS_REVIEW),
    ("GET", "/v1/approvals/policy", P.DRAFTS_READ),
    ("PATCH", "/v1/approvals/policy", P.APPROVAL_POLICY),
    ("POST", "/v1/drafts", P.DRAFTS_WRITE),
    ("GET", "/v1/drafts", P.DRAFTS_READ),
    ("GET", "/v1/drafts/{id}", P.DRAFTS_READ),
    ("POST", "/v1/drafts/{id}/submit", P.DRAFTS_WRITE),
    ("POST", "/v1/drafts/{id}/edit", P.DRAFTS_WRITE),
    ("GET", "/v1/templates", P.DRAFTS_READ),
    ("POST", "/v1/templates", P.TEMPLATES_MANAGE),
    ("PUT", "/v1/templates/{id}", P.TEMPLATES_MANAGE),
    ("GET", "/v1/drafting/sender", P.DRAFTS_READ),
    ("PATCH", "/v1/drafting/sender", P.TEMPLATES_MANAGE),
    ("GET", "/v1/suppressions", P.OUTREACH_READ),
    ("GET", "/v1/suppressions/check", P.OUTREACH_READ),
    ("POST", "/v1/suppressions", P.SUPPRESSIONS_MANAGE),
    ("DELETE", "/v1/suppressions/{id}", P.SUPPRESSIONS_MANAGE),
    ("GET", "/v1/dnc", P.OUTREACH_READ),
    ("POST", "/v1/dnc/import", P.SUPPRESSIONS_MANAGE),
    ("GET", "/v1/leads/{id}/consents", P.OUTREACH_READ),
    ("POST", "/v1/leads/{id}/consents", P.SUPPRESSIONS_MANAGE),
    ("POST", "/v1/messages", P.OUTREACH_SEND),
    ("GET", "/v1/messages", P.OUTREACH_READ),
    ("GET", "/v1/messages/{id}", P.OUTREACH_READ),
    ("GET", "/v1/outreach/policy", P.OUTREACH_READ),
    ("PATCH", "/v1/outreach/policy", P.OUTREACH_POLICY),
    ("POST", "/v1/campaigns", P.OUTREACH_SEND),
    ("GET", "/v1/campaigns", P.OUTREACH_READ),
    ("GET", "/v1/campaigns/{id}", P.OUTREACH_READ),
    ("POST", "/v1/campaigns/{id}/activate", P.OUTREACH_SEND),
    ("POST", "/v1/campaigns/{id}/pause", P.OUTREACH_SEND),
    ("POST", "/v1/campaigns/{id}/resume", P.OUTREACH_SEND),
    ("POST", "/v1/campaigns/{id}/stop", P.OUTREACH_SEND),
    ("POST", "/v1/campaigns/{id}/run", P.OUTREACH_SEND),
    ("GET", "/v1/campaigns/{id}/members", P.OUTREACH_READ),
    ("GET", "/v1/reports/funnel", P.OUTREACH_READ),
    ("POST", "/v1/dsar", P.DSAR_MANAGE),
    ("GET", "/v1/dsar", P.DSAR_MANAGE),
    ("GET", "/v1/dsar/{id}", P.DSAR_MANAGE),
    ("GET", "/v1/dsar/{id}/export.zip", P.DSAR_MANAGE),
    ("POST", "/v1/dsar/{id}/erase", P.DSAR_MANAGE),
    ("POST", "/v1/dsar/{id}/reject", P.DSAR_MANAGE),
    ("GET", "/v1/compliance/retention", P.AUDIT_READ),
    ("PUT", "/v1/compliance/retention", P.COMPLIANCE_MANAGE),
    ("POST", "/v1/compliance/retention/run", P.COMPLIANCE_MANAGE),
    ("GET", "/v1/compliance/retention/runs", P.AUDIT_READ),
]
OPEN_TO_EVERY_KEY = {("GET", "/v1/me")}
# Authenticated by the sender's signature, not by an API key (tests/inbound, tests/capture).
SIGNED_BY_SENDER = {
    ("POST", "/v1/inbound/endpoint_id"),
    *(
        (method, f"/v1/inbound/{provider}/source_id")
        for method in ("GET", "POST")
        for provider in ("meta", "whatsapp")
    ),
    # Delivery webhooks (tests/telemetry/test_webhooks.py).
    ("POST", "/v1/telemetry/sendgrid/events"),
    ("POST", "/v1/telemetry/mailgun/events"),
    ("POST", "/v1/telemetry/twilio/status"),
    # Inbound replies: Twilio and Mailgun signatures, SendGrid's HTTP Basic (test_inbound_api).
    ("POST", "/v1/telemetry/twilio/inbound"),
    ("POST", "/v1/telemetry/sendgrid/inbound"),
    ("POST", "/v1/telemetry/mailgun/inbound"),
}


@pytest.fixture
async def staff(tenants: TenantFactory) -> dict[Role, dict[str, str]]:
    """One tenant, one API key per role."""
    tenant = await tenants.create()
    return {role: await tenant.headers(role) for role in Role}


class TestPermissionMatrix:
    def test_covers_every_route(self) -> None:
        declared: set[tuple[str, str]] = set()
        for router in (
            identity_router,
            audit_router,
            posture_router,
            retention_router,
            ops_router,
            webhooks_router,
            inbound_router,
            capture_router,
            provider_router,
            scoring_router,
            routing_router,
            approvals_router,
            drafting_router,
            outreach_router,
            telemetry_router,
            reports_router,
            replies_router,
            dsar_router,
        ):
            for route in router.routes:
                assert isinstance(route, APIRoute)
                if route.path.startswith("/v1/"):
                    path = route.path.replace("{", "").replace("}", "")
                    for method in route.methods or ():
                        declared.add((method, path))
        listed = {
            (method, path.replace("{id}", name).replace("{delivery}", "delivery_id"))
            for method, path, _ in ROUTES
            for name in (
                "user_id",
                "key_id",
                "letter_id",
                "endpoint_id",
                "source_id",
                "lead_id",
                "version_id",
                "run_id",
                "team_id",
                "rep_id",
                "rule_id",
                "draft_id",
                "approval_id",
                "template_id",
                "suppression_id",
                "message_id",
                "campaign_id",
                "dsar_id",
            )
        } | OPEN_TO_EVERY_KEY
        assert declared - SIGNED_BY_SENDER <= listed
        assert len(declared) == len(ROUTES) + len(OPEN_TO_EVERY_KEY) + len(SIGNED_BY_SENDER)

    @pytest.mark.parametrize(
        ("method", "path", "permission"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES]
    )
    async def test_roles_without_the_permission_get_403(
        self,
        client: httpx.AsyncClient,
        staff: dict[Role, dict[str, str]],
        method: str,
        path: str,
        permission: Permission,
    ) -> None:
        url = path.format(id=uuid.uuid4(), delivery=uuid.uuid4())
        body: dict[str, object] | None = (
            {} if method in {"POST", "PATCH"} and not path.endswith(("replay", "secret")) else None
        )
        for role, headers in staff.items():
            response = await client.request(method, url, json=body, headers=headers)
            if permission in MATRIX[role]:
                assert response.status_code in {200, 201, 202, 404, 422}, (role, response.text)
            else:
                problem = assert_problem(response, 403, "forbidden")
                assert permission.value in problem["detail"], role

    async def test_every_role_may_ask_who_it_is(
        self, client: httpx.AsyncClient, staff: dict[Role, dict[str, str]]
    ) -> None:
        for role, headers in staff.items():
            response = await client.get("/v1/me", headers=headers)
            assert response.json()["role"] == role.value


@pytest.fixture
async def tenant_b_rows(
    client: httpx.AsyncClient, tenants: TenantFactory
) -> tuple[TenantCtx, dict[str, Any]]:
    """Tenant B with one of everything: a user, an API key, a webhook endpoint, a dead letter."""
    b = await tenants.create()
    headers = await b.headers()
    user = await user_id(b, await b.user(Role.REP))
    key = (
        await client.post("/v1/api-keys", json={"name": "b", "role": "rep"}, headers=headers)
    ).json()
    endpoint = (
        await client.post(
            "/v1/webhook-endpoints", json={"url": "https://b.example/hook"}, headers=headers
        )
    ).json()
    async with b.db.session(b.id) as session:
        letter = add_dead_letter(
            session,
            task_name="webhooks.deliver",
            payload={"tenant_id": str(b.id), "delivery_id": str(uuid.uuid4())},
            error="HTTP 500",
            attempts=11,
        )
        await session.flush()
        letter_id = letter.id
    return b, {"user": user, "key": key, "endpoint": endpoint, "letter": letter_id}


class TestTenantIsolation:
    async def test_another_tenants_ids_are_404_and_left_alone(
        self,
        client: httpx.AsyncClient,
        tenants: TenantFactory,
        tenant_b_rows: tuple[TenantCtx, dict[str, Any]],
    ) -> None:
        b, rows = tenant_b_rows
        a = await tenants.create()
        a_owner = await a.headers()
        user, key, endpoint, letter = rows["user"], rows["key"], rows["endpoint"], rows["letter"]
        ep = f"/v1/webhook-endpoints/{endpoint['id']}"
        attempts = [
            ("GET", f"/v1/users/{user}", None),
            ("PATCH", f"/v1/users/{user}", {"name": "pwned", "is_active": False}),
            ("DELETE", f"/v1/api-keys/{key['id']}", None),
            ("GET", ep, None),
            ("PATCH", ep, {"url": "https://evil.example/", "is_active": False}),
            ("GET", f"{ep}/secret", None),
            ("POST", f"{ep}/rotate-secret", None),
            ("GET", f"{ep}/deliveries", None),
            ("GET", f"/v1/dead-letters/{letter}", None),
            ("POST", f"/v1/dead-letters/{letter}/replay", None),
        ]

        for method, path, body in attempts:
            response = await client.request(method, path, json=body, headers=a_owner)
            assert_problem(response, 404, "not-found")

        b_owner = await b.headers()
        b_user = (await client.get(f"/v1/users/{user}", headers=b_owner)).json()
        assert (b_user["name"], b_user["is_active"]) == ("Rep", True)
        assert (await client.get("/v1/me", headers=bearer(key["key"]))).status_code == 200
        b_endpoint = (await client.get(ep, headers=b_owner)).json()
        assert (b_endpoint["url"], b_endpoint["is_active"]) == ("https://b.example/hook", True)
        assert b_endpoint["previous_secret_expires_at"] is None
        secret = (await client.get(f"{ep}/secret", headers=b_owner)).json()["secret"]
        assert secret == endpoint["secret"]
        b_letter = (await client.get(f"/v1/dead-letters/{letter}", headers=b_owner)).json()
        assert b_letter["replayed_at"] is None

    async def test_lists_show_only_the_callers_rows(
        self,
        client: httpx.AsyncClient,
        tenants: TenantFactory,
        tenant_b_rows: tuple[TenantCtx, dict[str, Any]],
    ) -> None:
        _, rows = tenant_b_rows
        a = await tenants.create()
        headers = await a.headers()
        users = (await client.get("/v1/users", headers=headers)).json()
        keys = (await client.get("/v1/api-keys", headers=headers)).json()
        endpoints = (await client.get("/v1/webhook-endpoints", headers=headers)).json()
        letters = (await client.get("/v1/dead-letters", headers=headers)).json()

        assert str(rows["user"]) not in {u["id"] for u in users}
        assert rows["key"]["id"] not in {k["id"] for k in keys}
        assert endpoints == []
        assert letters == []

    async def test_rows_are_unchanged_in_the_database(
        self,
        client: httpx.AsyncClient,
        tenants: TenantFactory,
        tenant_b_rows: tuple[TenantCtx, dict[str, Any]],
    ) -> None:
        b, rows = tenant_b_rows
        a = await tenants.create()
        headers = await a.headers()
        await client.patch(f"/v1/users/{rows['user']}", json={"role": "rep"}, headers=headers)
        await client.post(
            f"/v1/webhook-endpoints/{rows['endpoint']['id']}/rotate-secret", headers=headers
        )
        await client.post(f"/v1/dead-letters/{rows['letter']}/replay", headers=headers)

        async with b.db.session(b.id) as session:
            endpoint = await session.get(WebhookEndpoint, uuid.UUID(rows["endpoint"]["id"]))
            letter = await session.get(DeadLetter, rows["letter"])
        assert endpoint is not None
        assert endpoint.previous_secret_encrypted is None
        assert letter is not None
        assert (letter.replayed_at, letter.replay_job_id) == (None, None)
