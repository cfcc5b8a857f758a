"""The console's edges over plain HTTP against the live server: throttling, CSRF, redirects,
htmx error fragments, headers and grants. Faster than a browser for what a browser cannot see."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from leadrelay.capture import sources
from leadrelay.capture.models import ImportIssue, ImportStatus, LeadImport
from leadrelay.core.db import Database
from leadrelay.identity.models import Role
from tests.e2e.test_console_capture import SOURCE, make_vetted_source
from tests.factories import PASSWORD, TenantCtx, TenantFactory

pytestmark = pytest.mark.e2e

HTMX = {"HX-Request": "true"}


@pytest.fixture
async def http(live_server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server, follow_redirects=False) as client:
        yield client


@pytest.fixture
async def tenant(tenants: TenantFactory) -> TenantCtx:
    return await tenants.create("Edge Cases Ltd")


def _hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]+)"', html)
    assert match, f"no hidden {name} field"
    return match.group(1)


async def _login_fields(http: httpx.AsyncClient, email: str, password: str) -> dict[str, str]:
    form = await http.get("/console/login")
    return {"email": email, "password": password, "login_token": _hidden(form.text, "login_token")}


async def sign_in(http: httpx.AsyncClient, email: str) -> str:
    """Sign in; returns the session's CSRF token."""
    response = await http.post("/console/login", data=await _login_fields(http, email, PASSWORD))
    assert response.status_code == 303
    return _hidden((await http.get("/console")).text, "csrf_token")


class TestLogin:
    async def test_locks_out_after_repeated_failures(
        self, http: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        email = await tenant.user(Role.REP)
        for _ in range(5):
            refused = await http.post(
                "/console/login", data=await _login_fields(http, email, "wrong")
            )
            assert refused.status_code == 401
        throttled = await http.post(
            "/console/login", data=await _login_fields(http, email, PASSWORD)
        )
        assert throttled.status_code == 429
        assert "Please wait" in throttled.text

    async def test_refuses_a_post_without_the_login_form_token(
        self, http: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        email = await tenant.user(Role.REP)
        response = await http.post("/console/login", data={"email": email, "password": PASSWORD})
        assert response.status_code == 403
        assert "lr_session" not in response.cookies

    async def test_oversized_field_gets_a_page_not_json(self, http: httpx.AsyncClient) -> None:
        response = await http.post("/console/login", data={"email": "x" * 400, "password": "p"})
        assert response.status_code == 422
        assert response.headers["content-type"].startswith("text/html")
        assert "Back to the dashboard" in response.text

    async def test_never_redirects_outside_the_console(
        self, http: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        fields = await _login_fields(http, await tenant.user(Role.OWNER), PASSWORD)
        response = await http.post("/console/login", data={**fields, "next": "//evil.example/x"})
        assert response.status_code == 303
        assert response.headers["location"] == "/console"
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=lax" in cookie
        assert "path=/console" in cookie


class TestPages:
    async def test_send_security_headers_and_render_errors_as_pages(
        self, http: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        csrf = await sign_in(http, await tenant.user(Role.OWNER))
        response = await http.get("/console")
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"
        assert "script-src 'self'" in response.headers["content-security-policy"]

        bad_id = await http.post(
            "/console/api-keys/not-a-uuid/revoke", headers={"X-CSRF-Token": csrf}
        )
        assert bad_id.status_code == 422
        assert bad_id.headers["content-type"].startswith("text/html")
        assert "Invalid request" in bad_id.text

    async def test_manager_cannot_export_the_audit_trail(
        self, http: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        await sign_in(http, await tenant.user(Role.MANAGER))
        assert (await http.get("/console/audit")).status_code == 200
        assert (await http.get("/console/audit/export.csv")).status_code == 403


class TestHtmx:
    async def test_signed_out_request_is_sent_to_login(self, http: httpx.AsyncClient) -> None:
        response = await http.post("/console/api-keys", headers=HTMX)
        assert response.status_code == 401
        assert response.headers["hx-redirect"].startswith("/console/login")

    async def test_refusal_lands_in_the_notice_area(
        self, http: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        csrf = await sign_in(http, await tenant.user(Role.OWNER))
        forged = await http.post(f"/console/api-keys/{uuid.uuid4()}/revoke", headers=HTMX)
        assert forged.status_code == 403
        assert forged.headers["hx-retarget"] == "#notices"
        assert "notice--error" in forged.text

        unknown = await http.post(
            f"/console/api-keys/{uuid.uuid4()}/revoke", headers={**HTMX, "X-CSRF-Token": csrf}
        )
        assert unknown.status_code == 404
        assert "does not exist" in unknown.text

    async def test_invalid_user_form_comes_back_with_field_errors(
        self, http: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        csrf = await sign_in(http, await tenant.user(Role.OWNER))
        response = await http.post(
            "/console/users",
            data={"email": "not-an-email", "name": "X", "role": "rep", "password": "short"},
            headers={**HTMX, "X-CSRF-Token": csrf},
        )
        assert response.status_code == 422
        assert 'id="email-error"' in response.text
        assert 'id="password-error"' in response.text
        assert 'value="not-an-email"' in response.text

    async def test_admin_cannot_hand_out_the_owner_role(
        self, http: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        csrf = await sign_in(http, await tenant.user(Role.ADMIN))
        response = await http.post(
            "/console/users",
            data={
                "email": f"x-{uuid.uuid4().hex[:6]}@example.com",
                "name": "Would-be owner",
                "role": "owner",
                "password": "a long enough password",
            },
            headers={**HTMX, "X-CSRF-Token": csrf},
        )
        assert response.status_code == 403
        assert "cannot grant the owner role" in response.text


async def finished_import(db: Database, tenant: TenantCtx, errors: list[dict[str, str]]) -> str:
    """An import of the tenant's vetted source whose line 7 was rejected with `errors`."""
    await make_vetted_source(db, tenant)
    async with db.session(tenant.id) as session:
        source = await sources.get_source_by_name(session, SOURCE)
        assert source is not None
        done = LeadImport(
            tenant_id=tenant.id,
            source_id=source.id,
            filename="list.csv",
            status=ImportStatus.DONE,
            rows_total=1,
            rows_rejected=1,
        )
        session.add(done)
        await session.flush()
        session.add(
            ImportIssue(
                tenant_id=tenant.id, import_id=done.id, line=7, status="rejected", errors=errors
            )
        )
    return str(done.id)


class TestCapture:
    async def test_error_report_neutralizes_formula_cells(
        self, http: httpx.AsyncClient, tenant: TenantCtx, db: Database
    ) -> None:
        await sign_in(http, await tenant.user(Role.REVIEWER))
        import_id = await finished_import(
            db, tenant, [{"field": "=HYPERLINK(1)", "reason": "@SUM(A1)"}]
        )
        response = await http.get(f"/console/imports/{import_id}/errors.csv")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        assert "attachment" in response.headers["content-disposition"]
        assert response.text.splitlines() == [
            "line,status,field,reason",
            "7,rejected,'=HYPERLINK(1),'@SUM(A1)",
        ]

    async def test_another_tenants_import_and_unknown_ids_are_not_found(
        self, http: httpx.AsyncClient, tenant: TenantCtx, tenants: TenantFactory, db: Database
    ) -> None:
        csrf = await sign_in(http, await tenant.user(Role.OWNER))
        theirs = await finished_import(
            db, await tenants.create("Other Imports"), [{"field": "email", "reason": "x"}]
        )
        for path in (
            f"/console/imports/{theirs}",
            f"/console/imports/{theirs}/errors.csv",
            f"/console/imports/dry-runs/{uuid.uuid4()}",
            f"/console/leads/{uuid.uuid4()}",
        ):
            response = await http.get(path)
            assert response.status_code == 404, path
            assert response.headers["content-type"].startswith("text/html")
        undo = await http.post(
            f"/console/leads/{uuid.uuid4()}/merges/{uuid.uuid4()}/undo",
            headers={**HTMX, "X-CSRF-Token": csrf},
        )
        assert undo.status_code == 404
        assert undo.headers["hx-retarget"] == "#notices"

    async def test_upload_needs_the_csrf_token_and_the_leads_write_permission(
        self, http: httpx.AsyncClient, tenant: TenantCtx, db: Database
    ) -> None:
        await make_vetted_source(db, tenant)
        files = {"file": ("a.csv", b"email\nann@ann-corp.com\n", "text/csv")}
        csrf = await sign_in(http, await tenant.user(Role.REVIEWER))
        forged = await http.post("/console/imports", files=files, data={"source": SOURCE})
        assert forged.status_code == 403
        refused = await http.post(
            "/console/imports",
            files=files,
            data={"source": SOURCE, "csrf_token": csrf},
        )
        assert refused.status_code == 403
        assert "leads:write" in refused.text

        http.cookies.clear()
        csrf = await sign_in(http, await tenant.user(Role.REP))
        unknown = await http.post(
            "/console/imports",
            files=files,
            data={"source": "Nowhere", "csrf_token": csrf},
            headers=HTMX,
        )
        assert unknown.status_code == 422
        assert "no source named" in unknown.text
        accepted = await http.post(
            "/console/imports", files=files, data={"source": SOURCE, "csrf_token": csrf}
        )
        assert accepted.status_code == 303
        assert re.fullmatch(r"/console/imports/[0-9a-f-]{36}", accepted.headers["location"])
