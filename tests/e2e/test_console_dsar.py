"""Data-subject requests in a real browser: an export and an erasure opened from the form, the
list with each open request's age and the overdue one marked, the export downloaded as a ZIP
holding the person's rows, an erasure refused with a wrong confirmation and then done with the
typed one, its purge summary shown; and a reviewer who gets neither the page nor its link."""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass

import pytest
from playwright.async_api import Page, expect

from leadrelay.compliance import dsar
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database, DatabaseUrls
from leadrelay.core.security import secret_keys
from leadrelay.core.settings import Settings
from leadrelay.identity.models import Role
from tests.compliance.test_dsar import Seeded, Who, hits, seed_person, seed_tenant
from tests.e2e.conftest import Screenshot
from tests.e2e.test_console import open_from_nav, sign_in
from tests.factories import TenantCtx, TenantFactory
from tests.support import owner_connection

pytestmark = pytest.mark.e2e


@dataclass
class Workspace:
    tenant: TenantCtx
    owner_email: str
    who: Who
    seeded: Seeded
    late_id: str


@pytest.fixture
async def workspace(
    tenants: TenantFactory, db: Database, urls: DatabaseUrls, settings: Settings
) -> Workspace:
    """A person in every table, and an erasure request for someone else opened 40 days ago."""
    tenant = await tenants.create("Privacy Co")
    owner_email = await tenant.user(Role.OWNER)
    who = Who.new()
    with owner_connection(urls) as conn:
        seeded = seed_person(conn, seed_tenant(conn, tenant.id), who, unmatched=False)
    async with db.session(tenant.id) as session:
        late = await dsar.open_request(
            session,
            tenant.owner,
            keys=secret_keys(settings),
            kind=dsar.DsarKind.ERASURE,
            subject_kind=dsar.SubjectKind.EMAIL,
            subject="late.person@example.org",
            default_region=None,
            now=utcnow(),
        )
    with owner_connection(urls) as conn:
        conn.execute(
            "UPDATE dsar_requests SET requested_at = now() - interval '40 days', "
            "due_at = now() - interval '10 days' WHERE id = %s",
            (late.id,),
        )
    return Workspace(tenant, owner_email, who, seeded, str(late.id))


async def open_request(page: Page, kind: str, subject: str) -> None:
    await page.get_by_test_id("open-kind").select_option(kind)
    await page.get_by_test_id("open-subject-kind").select_option("email")
    await page.get_by_test_id("open-subject").fill(subject)
    async with page.expect_response(
        lambda r: r.url.endswith("/console/dsar") and r.request.method == "POST"
    ) as answer:
        await page.get_by_test_id("open-submit").click()
    assert (await answer.value).status == 200
    await expect(page.get_by_test_id("panel-notices")).to_contain_text("Opened")


class TestDataRequests:
    async def test_open_export_and_erase_with_typed_confirmation(
        self,
        page: Page,
        workspace: Workspace,
        urls: DatabaseUrls,
        screenshot: Screenshot,
    ) -> None:
        await sign_in(page, workspace.owner_email)
        await open_from_nav(page, "Data requests")
        late = page.locator(f"[data-testid=dsar-row][data-dsar-id='{workspace.late_id}']")
        await expect(late).to_have_attribute("data-overdue", "true")
        await expect(late).to_contain_text("overdue")
        await expect(late).to_contain_text("40 d")

        # A bad address is refused at its field, and nothing is opened.
        await page.get_by_test_id("open-subject").fill("not an address")
        await page.get_by_test_id("open-submit").click()
        await expect(page.locator("#subject-error")).to_contain_text("Not an e-mail address")
        await expect(page.get_by_test_id("dsar-row")).to_have_count(1)

        await open_request(page, "export", workspace.who.email)
        await open_request(page, "erasure", workspace.who.email)
        rows = page.get_by_test_id("dsar-row")
        await expect(rows).to_have_count(3)
        await expect(page.get_by_test_id("open-count")).to_have_text("3")
        await expect(rows.first).to_have_attribute("data-dsar-id", workspace.late_id)
        await screenshot(page, "dsar-list")

        # The export: downloaded as a ZIP with the person's rows.
        export_row = rows.filter(has_text="Export").first
        await export_row.get_by_test_id("dsar-open").click()
        await expect(page.locator("h1")).to_have_text("Export (access) request")
        async with page.expect_download() as download_info:
            await page.get_by_test_id("export-download").click()
        download = await download_info.value
        assert download.suggested_filename.startswith("dsar-")
        path = await download.path()
        with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as archive:
            leads = json.loads(archive.read("json/leads.json"))
            manifest = json.loads(archive.read("manifest.json"))
        assert str(workspace.seeded.lead_id) in {lead["id"] for lead in leads}
        assert manifest["tables"]["messages"] == 1
        await page.reload()
        await expect(page.get_by_test_id("dsar-status")).to_contain_text("completed")
        await expect(page.get_by_test_id("export-counts")).to_contain_text("lead_messages")

        # The erasure: a wrong confirmation is refused, the typed phrase erases.
        await page.goto("/console/dsar")
        await (
            rows.filter(has_text="Erasure")
            .filter(has_text=workspace.who.email)
            .get_by_test_id("dsar-open")
            .click()
        )
        phrase = f"erase {workspace.who.email}"
        await expect(page.get_by_test_id("erase-phrase")).to_have_text(phrase)
        await page.get_by_test_id("erase-confirmation").fill("erase")
        await page.get_by_test_id("erase-submit").click()
        await expect(page.locator("#confirmation-error")).to_contain_text(phrase)
        assert hits(urls, [workspace.who.email], workspace.tenant.id)  # nothing erased yet
        await page.get_by_test_id("erase-confirmation").fill(phrase)
        await page.get_by_test_id("erase-submit").click()
        await expect(page.get_by_test_id("detail-notices")).to_contain_text("Erased")
        summary = page.get_by_test_id("purge-summary")
        await expect(summary.locator("[data-testid=purge-row][data-table=leads]")).to_contain_text(
            "2"
        )
        await expect(summary).to_contain_text("1 email, 1 phone")
        await expect(page.get_by_test_id("dsar-subject")).to_contain_text("erased")
        await screenshot(page, "dsar-erased")
        assert hits(urls, workspace.who.needles, workspace.tenant.id) == {}

        await page.goto("/console/dsar")
        await expect(page.get_by_test_id("open-count")).to_have_text("1")
        await expect(page.locator("#dsar-table")).not_to_contain_text(workspace.who.email)

    async def test_a_reviewer_gets_neither_the_page_nor_its_link(
        self, page: Page, workspace: Workspace
    ) -> None:
        reviewer = await workspace.tenant.user(Role.REVIEWER)
        await sign_in(page, reviewer)
        await expect(
            page.locator("nav.sidebar").get_by_role("link", name="Data requests")
        ).to_have_count(0)
        response = await page.goto("/console/dsar")
        assert response is not None
        assert response.status == 403
        download = await page.request.get(f"/console/dsar/{workspace.late_id}/export.zip")
        assert download.status == 403
        await expect(page.locator("body")).to_contain_text(re.compile("dsar:manage"))
