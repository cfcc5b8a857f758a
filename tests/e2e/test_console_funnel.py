"""The funnel page in a real browser: opened from the navigation, the bar chart drawn by
Chart.js from the page's JSON, the stage table with its counts and rates, a source filter and a
grouping applied through the form, and the CSV downloaded with the same figures."""

from __future__ import annotations

import csv
import io
import re
import uuid

import pytest
from playwright.async_api import Page, expect

from leadrelay.core.db import Database
from leadrelay.identity.models import Role
from leadrelay.telemetry import funnel
from leadrelay.telemetry.funnel import STAGES
from tests.e2e.conftest import Screenshot
from tests.e2e.test_console import open_from_nav, sign_in
from tests.factories import TenantCtx, TenantFactory
from tests.telemetry.test_funnel import EVERYTHING, seed_pipeline

pytestmark = pytest.mark.e2e


@pytest.fixture
async def pipeline(tenants: TenantFactory, db: Database) -> tuple[TenantCtx, dict[str, uuid.UUID]]:
    tenant = await tenants.create("Funnel Browser Co")
    return tenant, await seed_pipeline(db, tenant)


def stage_count(page: Page, stage: str) -> object:
    return page.locator(f"[data-testid=stage-row][data-stage={stage}] [data-testid=stage-count]")


class TestFunnelPage:
    async def test_chart_table_filters_and_csv(
        self,
        page: Page,
        pipeline: tuple[TenantCtx, dict[str, uuid.UUID]],
        screenshot: Screenshot,
    ) -> None:
        tenant, ids = pipeline
        await sign_in(page, await tenant.user(Role.MANAGER))
        await open_from_nav(page, "Funnel")
        for stage, count in EVERYTHING.items():
            await expect(stage_count(page, stage)).to_have_text(str(count))  # type: ignore[arg-type]
        rate = page.locator("[data-testid=stage-row][data-stage=sent] [data-testid=stage-rate]")
        await expect(rate).to_have_text("75.0 %")
        await expect(page.get_by_test_id("dry-run-note")).to_contain_text("dry-run")
        chart = page.get_by_test_id("funnel-chart")
        await expect(chart).to_have_attribute("data-drawn", "true")  # Chart.js drew it
        assert await chart.evaluate("c => c.width > 0 && c.height > 0")
        await screenshot(page, "funnel")

        # Only the Web source, grouped by rep.
        await page.get_by_test_id("filter-source").select_option(str(ids["source:Web"]))
        await page.get_by_test_id("filter-group-by").select_option("rep")
        await page.get_by_test_id("filter-apply").click()
        await expect(page).to_have_url(re.compile(f"source={ids['source:Web']}"))
        await expect(page.get_by_test_id("funnel-ingested")).to_have_text("3")
        await expect(stage_count(page, "won")).to_have_text("1")  # type: ignore[arg-type]
        groups = page.get_by_test_id("group-row")
        await expect(groups).to_have_count(2)
        await expect(groups.first).to_contain_text("Ann")
        await expect(page.get_by_test_id("funnel-chart")).to_have_attribute("data-drawn", "true")

        async with page.expect_download() as waiting:
            await page.get_by_test_id("funnel-csv").click()
        download = await waiting.value
        assert download.suggested_filename == "funnel-rep.csv"
        path = await download.path()
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
        assert len(rows) == 3 * len(STAGES)  # the total, Ann, Bob
        total = {r["stage"]: r["count"] for r in rows if r["group"] == "All leads"}
        assert total["ingested"] == "3"
        assert total["sent"] == "3"
        assert {r["group"] for r in rows} == {"All leads", "Ann", "Bob"}

    async def test_hours_from_a_sample_are_marked_approximate(
        self,
        page: Page,
        pipeline: tuple[TenantCtx, dict[str, uuid.UUID]],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        tenant, _ = pipeline
        await sign_in(page, await tenant.user(Role.MANAGER))
        await page.goto("/console/funnel")
        await expect(page.get_by_test_id("median-head")).to_have_text("Median hours")
        await expect(page.get_by_test_id("hours-note")).to_contain_text("exact")
        verified = page.locator(
            "[data-testid=stage-row][data-stage=verified] [data-testid=stage-median]"
        )
        await expect(verified).to_have_attribute("title", re.compile(r"^from \d+ leads$"))

        # A cohort above the sampling size: the same page says its hours are approximate.
        monkeypatch.setattr(funnel, "SAMPLE_LEADS", 1)
        await page.reload()
        await expect(page.get_by_test_id("median-head")).to_have_text("Median hours ≈")
        await expect(page.get_by_test_id("hours-note")).to_contain_text("deterministic sample")
        await expect(page.get_by_test_id("stage-count").first).to_have_text(
            str(EVERYTHING["ingested"])
        )  # counts stay exact
