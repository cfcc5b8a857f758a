"""Capture in the console, in a real browser: the leads list and its filters, a lead's
provenance, CSV imports with progress and error reports, and the duplicate review queue with
merge preview, merge and undo."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio
import pytest
from playwright.async_api import Page, expect
from sqlalchemy import select

from leadrelay.capture import dedup, intake, sources
from leadrelay.capture.cleaning import clean_lead
from leadrelay.capture.dedup_models import MatchReview
from leadrelay.capture.models import (
    Lead,
    LeadImport,
    LeadStatus,
    LegalBasis,
    SourceKind,
    SourceStatus,
)
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database
from leadrelay.identity.models import Role
from tests.e2e.conftest import Screenshot
from tests.e2e.test_console import sign_in
from tests.factories import TenantCtx, TenantFactory

pytestmark = pytest.mark.e2e

SOURCE = "Website form"
LEADS = [
    {
        "full_name": "ana lima",
        "email": " Ana.Lima@Acme-Corp.com ",
        "phone": "(415) 555-0101",
        "company": "Acme Corp",
        "title": "Head of Operations",
        "external_id": "crm-1001",
    },
    {"full_name": "Bruno Diaz", "email": "bruno.diaz@gmail.com", "company": "Diaz Logistics"},
    {"email": "info@globex-industries.com", "company": "Globex Industries", "city": "Denver"},
]
# Scored between the review and merge thresholds: a person decides.
LIKELY_PAIR = [
    {"full_name": "M. Garcia", "company": "Northwind Traders", "email": "mg.nw@gmail.com"},
    {"full_name": "Maria Garcia", "company": "Nortwind Traders", "email": "maria.g@yahoo.com"},
]
GOOD_CSV = (
    "Name,E-mail,Phone,Company\n"
    "Carla Souza,carla@souza-imports.com,+1 212 555 0199,Souza Imports\n"
    "Dan Brown,,,Brown & Co\n"
    "Eve Adams,eve@adams-llc.com,,Adams LLC\n"
)
NO_CONTACT_CSV = "Name,Company\nFrank Ocean,Ocean Ltd\n"


@dataclass
class Workspace:
    tenant: TenantCtx
    db: Database
    owner_email: str

    async def capture(self, rows: list[dict[str, Any]]) -> list[uuid.UUID]:
        async with self.db.session(self.tenant.id) as session:
            source = await sources.get_source_by_name(session, SOURCE)
            assert source is not None
            results = await intake.ingest(
                session,
                source,
                [{key: value for key, value in row.items()} for row in rows],
                normalize=clean_lead,
                policy=intake.CapturePolicy(),
                now=utcnow(),
            )
        ids = [result.lead_id for result in results]
        assert all(ids), results
        return [lead_id for lead_id in ids if lead_id is not None]

    async def likely_pair(self) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
        """Two leads the matcher sends to review, the older first, and their review."""
        (older,) = await self.capture(LIKELY_PAIR[:1])
        (newer,) = await self.capture(LIKELY_PAIR[1:])
        async with self.db.session(self.tenant.id) as session:
            report = await dedup.dedup_leads(
                session, self.tenant.id, [older, newer], now=utcnow() + timedelta(seconds=1)
            )
            assert report.reviews == 1, report
            review_id = await session.scalar(select(MatchReview.id))
        assert review_id is not None
        return older, newer, review_id

    async def statuses(self) -> dict[uuid.UUID, LeadStatus]:
        async with self.db.session(self.tenant.id) as session:
            rows = await session.execute(select(Lead.id, Lead.status))
            return {lead_id: LeadStatus(status) for lead_id, status in rows}


async def make_vetted_source(db: Database, tenant: TenantCtx, name: str = SOURCE) -> None:
    async with db.session(tenant.id) as session:
        source = await sources.create_source(
            session,
            tenant.owner,
            name=name,
            kind=SourceKind.OFFICIAL_API,
            legal_basis=LegalBasis.CONSENT,
            assessment="",
            default_country="US",
            is_personal_profile=False,
            now=utcnow(),
        )
        await sources.update_source(
            session,
            tenant.owner,
            source.id,
            status=SourceStatus.VETTED,
            assessment=None,
            default_country=None,
            now=utcnow(),
        )


@pytest.fixture
async def workspace(tenants: TenantFactory, db: Database) -> Workspace:
    tenant = await tenants.create("Capture Co")
    await make_vetted_source(db, tenant)
    return Workspace(tenant, db, await tenant.user(Role.OWNER))


def csv_file(name: str, text: str) -> dict[str, Any]:
    return {"name": name, "mimeType": "text/csv", "buffer": text.encode()}


class TestLeads:
    async def test_lists_filters_by_flag_searches_and_loads_more(
        self, page: Page, workspace: Workspace, screenshot: Screenshot
    ) -> None:
        await workspace.capture(LEADS)
        await sign_in(page, workspace.owner_email)
        await page.locator("nav.sidebar").get_by_role("link", name="Leads", exact=True).click()
        await expect(page.locator("h1")).to_have_text("Leads")
        rows = page.locator("#leads-table tbody tr")
        await expect(rows).to_have_count(3)
        ana = rows.filter(has_text="ana.lima@acme-corp.com")
        await expect(ana).to_contain_text("Ana Lima")
        await expect(ana).to_contain_text("+14155550101")
        await expect(ana).to_contain_text(SOURCE)
        await expect(rows.filter(has_text="info@globex")).to_contain_text("role email")
        await screenshot(page, "leads")

        await page.select_option("#lead-filters select[name=flag]", "free_email")
        await expect(rows).to_have_count(1)
        await expect(rows).to_contain_text("bruno.diaz@gmail.com")
        await expect(rows.locator("[data-flag=free_email]")).to_be_visible()
        await expect(page).to_have_url(re.compile(r"flag=free_email"))

        await page.select_option("#lead-filters select[name=flag]", "")
        await page.fill("#lead-filters input[name=q]", "globex")
        await expect(rows).to_have_count(1)
        await expect(rows).to_contain_text("Globex Industries")
        await page.fill("#lead-filters input[name=q]", "nobody-here")
        await expect(page.get_by_test_id("no-leads")).to_contain_text("No leads match")

        await workspace.capture(
            [{"full_name": f"Filler {n}", "email": f"filler{n}@filler-corp.com"} for n in range(50)]
        )
        await page.goto("/console/leads")
        await expect(rows).to_have_count(51)  # 50 leads and the "Load more" row
        await expect(page.get_by_test_id("leads-count")).to_have_text("50+")
        await page.get_by_role("link", name="Load more").click()
        await expect(rows).to_have_count(53)
        await expect(page.get_by_role("link", name="Load more")).to_have_count(0)

    async def test_detail_shows_provenance_and_another_tenants_lead_is_not_found(
        self,
        page: Page,
        workspace: Workspace,
        tenants: TenantFactory,
        db: Database,
        screenshot: Screenshot,
    ) -> None:
        ana_id, *_ = await workspace.capture(LEADS)
        await sign_in(page, workspace.owner_email)
        await page.goto("/console/leads")
        await page.get_by_role("link", name="Ana Lima").click()
        await expect(page).to_have_url(re.compile(rf"/console/leads/{ana_id}$"))
        await expect(page.locator("h1")).to_have_text("Ana Lima")
        await expect(page.get_by_test_id("lead-fields")).to_contain_text("ana.lima@acme-corp.com")
        await expect(page.get_by_test_id("external-ids")).to_contain_text("crm-1001")

        provenance = page.locator("#provenance-table")
        phone = provenance.locator("tr[data-field=phone_e164]")
        await expect(phone).to_contain_text("+14155550101")
        await expect(phone.locator(".raw-cell")).to_have_text("(415) 555-0101")
        await expect(phone).to_contain_text(SOURCE)
        email = provenance.locator("tr[data-field=email]")
        await expect(email.locator(".raw-cell")).to_contain_text("Ana.Lima@Acme-Corp.com")
        await expect(provenance.locator("tr[data-field=full_name] .raw-cell")).to_have_text(
            "ana lima"
        )
        await expect(page.get_by_test_id("lead-timeline")).to_contain_text("captured")
        await screenshot(page, "lead-detail")

        other = await tenants.create("Someone Else")
        await make_vetted_source(db, other)
        async with db.session(other.id) as session:
            source = await sources.get_source_by_name(session, SOURCE)
            assert source is not None
            (theirs,) = await intake.ingest(
                session,
                source,
                [{"email": "secret@elsewhere-corp.com"}],
                normalize=clean_lead,
                policy=intake.CapturePolicy(),
                now=utcnow(),
            )
        response = await page.goto(f"/console/leads/{theirs.lead_id}")
        assert response is not None
        assert response.status == 404
        await expect(page.locator("h1")).to_have_text("Not found")
        assert "secret@elsewhere-corp.com" not in await page.content()


class TestImports:
    async def test_upload_shows_progress_counts_and_the_error_report(
        self, page: Page, workspace: Workspace, screenshot: Screenshot
    ) -> None:
        await sign_in(page, workspace.owner_email)
        await page.locator("nav.sidebar").get_by_role("link", name="Imports", exact=True).click()
        await expect(page.locator("h1")).to_have_text("Imports")
        await expect(page.get_by_test_id("no-imports")).to_be_visible()

        await page.set_input_files("#upload-form input[name=file]", csv_file("fair.csv", GOOD_CSV))
        await page.select_option("#upload-form select[name=source]", SOURCE)
        await page.get_by_role("button", name="Start import").click()

        card = page.get_by_test_id("import-card")
        await expect(card).to_contain_text("fair.csv")
        await expect(card).to_have_attribute("data-status", "done")
        counts = card.get_by_test_id("import-counts")
        await expect(counts.locator("[data-count=rows]")).to_have_text("3")
        await expect(counts.locator("[data-count=accepted]")).to_have_text("2")
        await expect(counts.locator("[data-count=duplicates]")).to_have_text("0")
        await expect(counts.locator("[data-count=rejected]")).to_have_text("1")
        await expect(card.locator(".issues")).to_contain_text("no_valid_contact")
        row = page.locator("#imports-table tbody tr", has_text="fair.csv")
        await expect(row).to_have_attribute("data-status", "done")
        await expect(row).to_contain_text(SOURCE)
        await screenshot(page, "imports")

        async with page.expect_download() as download_info:
            await card.get_by_test_id("error-report").click()
        download = await download_info.value
        assert download.suggested_filename.endswith("-errors.csv")
        report = (await anyio.Path(await download.path()).read_text("utf-8")).splitlines()
        assert report == ["line,status,field,reason", "3,rejected,email,no_valid_contact"]

        await card.locator("h2 a").click()
        await expect(page.locator("h1")).to_have_text("fair.csv")
        await expect(page.get_by_test_id("import-card")).to_have_attribute("data-status", "done")
        await screenshot(page, "import-detail")

        await page.goto("/console/leads?q=souza")
        await expect(page.locator("#leads-table tbody tr")).to_have_count(1)
        await page.get_by_role("link", name="Carla Souza").click()
        await expect(page.locator("#provenance-table")).to_contain_text("fair.csv")

    async def test_refuses_a_file_without_contact_columns_and_dry_runs_save_nothing(
        self, page: Page, workspace: Workspace, screenshot: Screenshot
    ) -> None:
        await sign_in(page, workspace.owner_email)
        await page.goto("/console/imports")
        form = page.locator("#upload-form")
        await form.locator("input[name=file]").set_input_files(
            csv_file("names.csv", NO_CONTACT_CSV)
        )
        async with page.expect_response(
            lambda r: r.url.endswith("/console/imports") and r.request.method == "POST"
        ) as refused:
            await form.get_by_role("button", name="Start import").click()
        assert (await refused.value).status == 422
        refusal = page.get_by_test_id("refusal")
        await expect(refusal).to_contain_text("missing required columns")
        await expect(refusal).to_contain_text("found columns: Name, Company")
        await expect(page.get_by_test_id("no-imports")).to_be_visible()
        await screenshot(page, "imports-refused")

        await form.locator("input[name=file]").set_input_files(csv_file("check.csv", GOOD_CSV))
        await form.locator("input[name=dry_run]").check()
        await form.get_by_role("button", name="Start import").click()
        card = page.get_by_test_id("dry-run-card")
        await expect(card).to_have_attribute("data-status", "done")
        await expect(card.locator("[data-count=accepted]")).to_have_text("2")
        await expect(card.locator("[data-count=rejected]")).to_have_text("1")
        await expect(card.locator(".issues")).to_contain_text("no_valid_contact")
        await expect(page.get_by_test_id("refusal")).to_have_count(0)
        await expect(page.get_by_test_id("no-imports")).to_be_visible()
        async with workspace.db.session(workspace.tenant.id) as session:
            assert await session.scalar(select(LeadImport.id)) is None
        assert await workspace.statuses() == {}


class TestDuplicateReview:
    async def test_preview_merge_then_undo_restores_both_leads(
        self, page: Page, workspace: Workspace, screenshot: Screenshot
    ) -> None:
        older, newer, _ = await workspace.likely_pair()
        await sign_in(page, workspace.owner_email)
        await (
            page.locator("nav.sidebar")
            .get_by_role("link", name="Duplicate review", exact=True)
            .click()
        )
        await expect(page.locator("h1")).to_have_text("Duplicate review")
        review = page.get_by_test_id("review")
        await expect(review).to_have_count(1)
        compare = review.get_by_test_id("compare")
        await expect(compare.locator("thead")).to_contain_text(str(older)[:8])
        await expect(compare.locator("tr[data-field=company]")).to_have_class(re.compile("is-diff"))
        await expect(compare.locator("tr[data-field=company]")).to_contain_text("Nortwind Traders")
        await expect(compare.locator("tr[data-field=city]")).not_to_have_class(
            re.compile("is-diff")
        )
        contributions = review.get_by_test_id("contributions")
        await expect(contributions).to_contain_text("partial")
        await expect(contributions).to_contain_text("differ")
        preview = review.get_by_test_id("preview")
        await expect(preview.locator("tr[data-field=full_name]")).to_contain_text("M. Garcia")
        await expect(preview.locator("tr[data-field=full_name]")).to_contain_text("Maria Garcia")
        await expect(preview.locator("tr[data-field=email]")).to_contain_text("mg.nw@gmail.com")
        await screenshot(page, "dedup")

        await review.get_by_role("button", name="Merge").click()
        await expect(page.get_by_test_id("no-reviews")).to_be_visible()
        await expect(page.locator(".notice--success")).to_contain_text("Merged")
        assert await workspace.statuses() == {older: LeadStatus.NEW, newer: LeadStatus.MERGED}

        await page.goto(f"/console/leads/{newer}")
        merged_into = page.get_by_test_id("merged-into")
        await expect(merged_into.get_by_role("link")).to_have_attribute(
            "href", f"/console/leads/{older}"
        )
        await merged_into.get_by_role("link").click()
        await expect(page).to_have_url(re.compile(rf"/console/leads/{older}$"))
        await expect(page.get_by_test_id("merged-leads")).to_contain_text("Maria Garcia")
        merges = page.locator("#merges-table tbody tr")
        await expect(merges).to_have_count(1)
        await expect(merges).to_contain_text("review")
        await expect(page.get_by_test_id("lead-timeline")).to_contain_text("lead.merged")
        await screenshot(page, "lead-detail-merges")

        await merges.get_by_role("button", name="Undo merge").click()
        await expect(page.locator("#lead-detail .notice--success")).to_contain_text("undone")
        await expect(page.locator("#merges-table")).to_have_count(0)
        await expect(page.get_by_test_id("lead-timeline")).to_contain_text("lead.unmerged")
        assert await workspace.statuses() == {older: LeadStatus.NEW, newer: LeadStatus.NEW}
        await page.goto(f"/console/leads/{newer}")
        await expect(page.get_by_test_id("merged-into")).to_have_count(0)
        await expect(page.locator("h1")).to_have_text("Maria Garcia")

    async def test_reviewer_sees_pairs_but_cannot_decide(
        self, page: Page, workspace: Workspace, screenshot: Screenshot
    ) -> None:
        older, newer, review_id = await workspace.likely_pair()
        await sign_in(page, await workspace.tenant.user(Role.REVIEWER))
        nav = page.locator("nav.sidebar")
        await expect(nav.get_by_role("link", name="Leads", exact=True)).to_be_visible()
        await nav.get_by_role("link", name="Duplicate review").click()
        review = page.get_by_test_id("review")
        await expect(review).to_have_count(1)
        await expect(review.get_by_test_id("preview")).to_be_visible()
        await expect(review.get_by_role("button")).to_have_count(0)
        await expect(page.locator("#reviews-panel")).to_contain_text("can look but not decide")

        token = await page.locator("body").get_attribute("hx-headers")
        assert token
        csrf = re.search(r'"X-CSRF-Token": "([^"]+)"', token)
        assert csrf
        refused = await page.request.post(
            f"/console/dedup/{review_id}/merge", headers={"X-CSRF-Token": csrf.group(1)}
        )
        assert refused.status == 403
        assert "leads:write" in await refused.text()
        await page.goto("/console/imports")
        await expect(page.locator("#upload-form")).to_have_count(0)
        assert await workspace.statuses() == {older: LeadStatus.NEW, newer: LeadStatus.NEW}

        await page.context.clear_cookies()
        await sign_in(page, workspace.owner_email)
        await page.goto("/console/dedup")
        await page.get_by_test_id("review").get_by_role("button", name="Keep apart").click()
        await expect(page.get_by_test_id("no-reviews")).to_be_visible()
        await expect(page.locator(".notice--success")).to_contain_text("Kept apart")
        assert await workspace.statuses() == {older: LeadStatus.NEW, newer: LeadStatus.NEW}
