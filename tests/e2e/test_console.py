"""The console in a real browser: sign-in, each page, htmx actions, roles, CSRF, sign-out."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import pytest
from playwright.async_api import Page, expect

from leadrelay.core.db import Database
from leadrelay.core.jobs import add_dead_letter
from leadrelay.identity.models import Role
from tests.e2e.conftest import Screenshot
from tests.factories import PASSWORD, TenantCtx, TenantFactory

pytestmark = pytest.mark.e2e

TENANT_NAME = "Northwind Realty"


@dataclass
class Workspace:
    tenant: TenantCtx
    owner_email: str


@pytest.fixture
async def workspace(tenants: TenantFactory) -> Workspace:
    tenant = await tenants.create(TENANT_NAME)
    return Workspace(tenant, await tenant.user(Role.OWNER))


async def sign_in(page: Page, email: str, password: str = PASSWORD) -> None:
    await page.goto("/console/login")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(re.compile(r"/console$"))


async def open_from_nav(page: Page, label: str) -> None:
    await page.locator("nav.sidebar").get_by_role("link", name=label, exact=True).click()
    await expect(page.locator("h1")).to_have_text(label)


class TestSignIn:
    async def test_wrong_password_is_refused_then_right_one_opens_dashboard(
        self, page: Page, workspace: Workspace, screenshot: Screenshot
    ) -> None:
        await page.goto("/console")
        await expect(page).to_have_url(re.compile(r"/console/login\?next=/console$"))
        await screenshot(page, "login")

        await page.fill("input[name=email]", workspace.owner_email)
        await page.fill("input[name=password]", "not the password")
        async with page.expect_response(
            lambda r: r.url.endswith("/console/login") and r.request.method == "POST"
        ) as refused:
            await page.click("button[type=submit]")
        assert (await refused.value).status == 401
        await expect(page.locator(".notice--error")).to_contain_text("Wrong e-mail or password")
        await expect(page.locator("input[name=email]")).to_have_value(workspace.owner_email)
        await screenshot(page, "login-error")

        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await expect(page).to_have_url(re.compile(r"/console$"))
        await expect(page.get_by_test_id("tenant-name")).to_have_text(TENANT_NAME)
        await expect(page.locator(".page-head h1")).to_have_text(TENANT_NAME)
        await expect(page.get_by_test_id("user-email")).to_have_text(workspace.owner_email)
        await expect(page.locator(".tile")).to_have_count(4)
        await expect(page.locator(".tiles")).to_contain_text("Intact")
        await screenshot(page, "dashboard")

    async def test_sign_out_returns_to_login_and_ends_the_session(
        self, page: Page, workspace: Workspace
    ) -> None:
        await sign_in(page, workspace.owner_email)
        await page.get_by_role("button", name="Sign out").click()
        await expect(page).to_have_url(re.compile(r"/console/login\?signed_out=true$"))
        await expect(page.locator(".notice--info")).to_contain_text("signed out")

        await page.goto("/console/users")
        await expect(page).to_have_url(re.compile(r"/console/login\?next=/console/users$"))
        await page.fill("input[name=email]", workspace.owner_email)
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await expect(page).to_have_url(re.compile(r"/console/users$"))


class TestUsers:
    async def test_owner_creates_a_user_from_the_form(
        self, page: Page, workspace: Workspace, screenshot: Screenshot
    ) -> None:
        await sign_in(page, workspace.owner_email)
        await open_from_nav(page, "Users")
        email = f"dana-{uuid.uuid4().hex[:6]}@example.com"
        form = page.locator("#users-panel form")
        await form.locator("input[name=email]").fill(email)
        await form.locator("input[name=name]").fill("Dana Reviewer")
        await form.locator("select[name=role]").select_option("reviewer")
        await form.locator("input[name=password]").fill("a long enough password")
        await form.get_by_role("button", name="Create user").click()

        row = page.locator("#users-table tbody tr", has_text=email)
        await expect(row).to_contain_text("Dana Reviewer")
        await expect(row).to_contain_text("reviewer")
        await expect(page.locator("#users-panel .notice--success")).to_contain_text(email)
        await screenshot(page, "users")

        await form.locator("input[name=email]").fill(email)
        await form.locator("input[name=name]").fill("Dana Twin")
        await form.locator("input[name=password]").fill("a long enough password")
        await form.get_by_role("button", name="Create user").click()
        await expect(page.locator("#email-error")).to_contain_text("already exists")
        await expect(page.locator("#users-table tbody tr", has_text=email)).to_have_count(1)

        await row.get_by_role("button", name="Deactivate").click()
        await expect(row).to_contain_text("inactive")

    async def test_reviewer_sees_no_users_link_and_is_refused_the_page(
        self, page: Page, workspace: Workspace, screenshot: Screenshot
    ) -> None:
        await sign_in(page, await workspace.tenant.user(Role.REVIEWER))
        nav = page.locator("nav.sidebar")
        await expect(nav).to_contain_text("Dashboard")
        await expect(nav.get_by_role("link", name="Users")).to_have_count(0)
        await expect(nav.get_by_role("link", name="API keys")).to_have_count(0)

        response = await page.goto("/console/users")
        assert response is not None
        assert response.status == 403
        await expect(page.locator("h1")).to_have_text("Not allowed")
        await expect(page.locator("main")).to_contain_text("reviewer role")
        await screenshot(page, "forbidden")


class TestApiKeys:
    async def test_new_key_is_shown_once_then_revoked(
        self, page: Page, workspace: Workspace, screenshot: Screenshot
    ) -> None:
        await sign_in(page, workspace.owner_email)
        await open_from_nav(page, "API keys")
        await page.fill("#api-keys-panel input[name=name]", "CRM sync")
        await page.select_option("#api-keys-panel select[name=role]", "rep")
        await page.get_by_role("button", name="Create key").click()

        secret = page.locator("#new-key-value")
        await expect(secret).to_have_text(re.compile(r"^lr_\w+\.\S{20,}$"))
        token = await secret.inner_text()
        await expect(page.get_by_test_id("new-key").get_by_role("button")).to_contain_text("Copy")
        row = page.locator("#api-keys-table tbody tr", has_text="CRM sync")
        await expect(row).to_contain_text(token.split(".")[0])
        await screenshot(page, "api-keys")

        await page.reload()
        await expect(page.get_by_test_id("new-key")).to_have_count(0)
        assert token not in await page.content()

        await row.get_by_role("button", name="Revoke").click()
        await expect(row).to_contain_text("revoked")
        await expect(row.get_by_role("button", name="Revoke")).to_have_count(0)

    async def test_post_without_csrf_token_is_refused(
        self, page: Page, workspace: Workspace
    ) -> None:
        await sign_in(page, workspace.owner_email)
        await page.goto("/console/api-keys")
        missing = await page.request.post(
            "/console/api-keys", form={"name": "sneaky", "role": "rep"}
        )
        assert missing.status == 403
        forged = await page.request.post(
            "/console/api-keys", form={"name": "sneaky", "role": "rep", "csrf_token": "forged"}
        )
        assert forged.status == 403

        token = await page.locator("input[name=csrf_token]").first.get_attribute("value")
        assert token
        accepted = await page.request.post(
            "/console/api-keys",
            form={"name": "legit", "role": "rep"},
            headers={"X-CSRF-Token": token},
        )
        assert accepted.status == 201
        await page.reload()
        await expect(page.locator("#api-keys-table")).to_contain_text("legit")
        await expect(page.locator("#api-keys-table")).not_to_contain_text("sneaky")


class TestAudit:
    async def test_lists_login_verifies_chain_filters_and_exports(
        self, page: Page, workspace: Workspace, screenshot: Screenshot
    ) -> None:
        await sign_in(page, workspace.owner_email)
        await open_from_nav(page, "Audit trail")
        timeline = page.locator("#audit-list")
        await expect(timeline.locator("[data-action='user.login']")).to_have_count(1)
        await expect(timeline.locator("[data-action='tenant.created']")).to_have_count(1)

        await page.get_by_role("button", name="Verify chain").click()
        await expect(page.get_by_test_id("chain-ok")).to_contain_text("intact")
        await screenshot(page, "audit")

        await page.fill("#audit-filters input[name=action]", "user.login")
        await page.get_by_role("button", name="Apply").click()
        await expect(timeline.locator("[data-action='tenant.created']")).to_have_count(0)
        await expect(timeline.locator(".timeline__item")).to_have_count(1)
        await expect(page).to_have_url(re.compile(r"action=user\.login"))

        export = await page.request.get("/console/audit/export.csv?action=user.login")
        assert export.status == 200
        lines = (await export.text()).strip().splitlines()
        assert lines[0].startswith("seq,occurred_at")
        assert len(lines) == 2
        assert "user.login" in lines[1]


class TestDeadLetters:
    async def test_empty_state_then_replay_marks_the_letter_replayed(
        self, page: Page, workspace: Workspace, db: Database, screenshot: Screenshot
    ) -> None:
        await sign_in(page, workspace.owner_email)
        await open_from_nav(page, "Dead letters")
        await expect(page.get_by_test_id("no-dead-letters")).to_be_visible()
        await screenshot(page, "dead-letters-empty")

        tenant_id = workspace.tenant.id
        async with db.session(tenant_id) as session:
            add_dead_letter(
                session,
                task_name="webhooks.deliver",
                payload={"tenant_id": str(tenant_id), "delivery_id": str(uuid.uuid4())},
                error="httpx.ConnectError: [Errno 111] Connection refused",
                attempts=5,
            )
        await page.reload()
        row = page.locator("#dead-letters-table tbody tr", has_text="webhooks.deliver")
        await expect(row).to_contain_text("not replayed")
        await expect(row).to_contain_text("Connection refused")
        await screenshot(page, "dead-letters")

        await row.get_by_role("button", name="Replay").click()
        await expect(row).to_contain_text("replayed")
        await expect(row).not_to_contain_text("not replayed")
        await expect(row.get_by_role("button", name="Replay")).to_have_count(0)
