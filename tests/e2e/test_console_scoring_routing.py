"""ICP scoring and routing in the console, in a real browser: a draft refused rule by rule then
saved, its activation with the rescoring progress, the quality section without outcomes, the
"suggest weights" refusal; the routing setup, work queue, SLA timers and the simulator's trace;
and a rep who sees both pages but none of the buttons that change them."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import pytest
from playwright.async_api import Page, expect
from sqlalchemy.ext.asyncio import AsyncSession

from leadrelay.capture import intake, sources
from leadrelay.capture.cleaning import clean_lead
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database
from leadrelay.core.jobs import JobRuntime
from leadrelay.identity.models import Role
from leadrelay.routing import service as routing
from leadrelay.routing.models import Rep, RoutingRuleRow, Team
from leadrelay.scoring import icp, quality
from leadrelay.scoring import service as scoring
from tests.e2e.conftest import Screenshot
from tests.e2e.test_console import sign_in
from tests.e2e.test_console_capture import SOURCE, make_vetted_source
from tests.factories import TenantCtx, TenantFactory
from tests.support import run_jobs

pytestmark = pytest.mark.e2e

RULES: list[dict[str, Any]] = [
    {
        "id": "us",
        "label": "Based in the US",
        "when": [{"fact": "country", "op": "equals", "value": "US"}],
        "points": 40,
    },
    {
        "id": "leader",
        "label": "Sales leadership",
        "when": [{"fact": "title", "op": "regex", "value": r"\b(vp|head|chief)\b"}],
        "points": 40,
    },
    {
        "id": "big",
        "label": "Large budget",
        "when": [{"fact": "attributes.budget", "op": "gte", "value": 10000}],
        "points": 20,
    },
]
# The first and third rules name facts wrongly; the second is fine.
BAD_RULES: list[dict[str, Any]] = [
    {**RULES[0], "when": [{"fact": "country", "op": "gt", "value": 3}]},
    RULES[1],
    {**RULES[2], "when": [{"fact": "budget", "op": "exists", "value": True}]},
]
LEADS = [
    {"full_name": "Grace Hopper", "email": "grace@navy-labs.com", "title": "VP Sales"},
    {"full_name": "Alan Turing", "email": "alan@bletchley-park.co.uk", "title": "Engineer"},
]


@dataclass
class Workspace:
    tenant: TenantCtx
    db: Database
    manager_email: str
    rep_email: str
    lead_ids: dict[str, uuid.UUID]


async def capture(db: Database, tenant: TenantCtx, rows: list[dict[str, str]]) -> list[uuid.UUID]:
    async with db.session(tenant.id) as session:
        source = await sources.get_source_by_name(session, SOURCE)
        assert source is not None
        results = await intake.ingest(
            session,
            source,
            rows,
            normalize=clean_lead,
            policy=intake.CapturePolicy(),
            now=utcnow(),
        )
    ids = [result.lead_id for result in results]
    assert all(ids), results
    return [lead_id for lead_id in ids if lead_id is not None]


async def routing_setup(db: Database, tenant: TenantCtx, lead_ids: list[uuid.UUID]) -> None:
    """A US team with one working rep and one inactive one, a rule sending US leads to it,
    then the two leads routed for real: the US lead to Anna (an SLA timer), the other queued."""
    async with db.session(tenant.id) as session:
        team = Team(tenant_id=tenant.id, name="Inbound US", strategy="round_robin", sla_minutes=30)
        session.add(team)
        await session.flush()
        session.add_all(
            [
                Rep(
                    tenant_id=tenant.id,
                    team_id=team.id,
                    name="Anna Berg",
                    timezone="America/New_York",
                    capacity=25,
                    skills=["saas"],
                    territories=["US"],
                ),
                Rep(
                    tenant_id=tenant.id,
                    team_id=team.id,
                    name="Ben Ortiz",
                    timezone="America/Chicago",
                    active=False,
                ),
                RoutingRuleRow(
                    tenant_id=tenant.id,
                    name="US inbound",
                    position=1,
                    when=[{"fact": "country", "op": "equals", "value": "US"}],
                    team_id=team.id,
                ),
            ]
        )
        await session.flush()
        routed = await routing.route_leads(session, tenant.id, lead_ids, now=utcnow())
    assert sorted(r.decision.outcome.value for r in routed) == ["assigned", "queued"], routed


@pytest.fixture
async def workspace(tenants: TenantFactory, db: Database) -> Workspace:
    tenant = await tenants.create("Qualify Co")
    await make_vetted_source(db, tenant)
    us, gb = await capture(
        db, tenant, [{**LEADS[0], "country": "US"}, {**LEADS[1], "country": "GB"}]
    )
    await routing_setup(db, tenant, [us, gb])
    return Workspace(
        tenant,
        db,
        await tenant.user(Role.MANAGER),
        await tenant.user(Role.REP),
        {"us": us, "gb": gb},
    )


async def fill_draft(page: Page, rules: list[dict[str, Any]], threshold: int = 60) -> None:
    form = page.get_by_test_id("draft-form")
    await form.locator("textarea[name=rules]").fill(json.dumps(rules, indent=2))
    await form.locator("input[name=threshold]").fill(str(threshold))


async def csrf_token(page: Page) -> str:
    token = await page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    return token


class TestScoring:
    async def test_refused_draft_then_saved_activated_rescored_and_measured(
        self,
        page: Page,
        workspace: Workspace,
        job_runtime: JobRuntime,
        screenshot: Screenshot,
    ) -> None:
        await sign_in(page, workspace.manager_email)
        await page.locator("nav.sidebar").get_by_role("link", name="ICP scoring").click()
        await expect(page.locator("h1")).to_have_text("ICP scoring")
        await expect(page.get_by_test_id("no-versions")).to_be_visible()
        # With no active version, the form starts from the sample rules.
        await expect(page.locator("textarea[name=rules]")).to_have_value(re.compile('"us"'))

        await fill_draft(page, BAD_RULES)
        await page.get_by_role("button", name="Save draft").click()
        await expect(page.get_by_test_id("draft-refusal")).to_contain_text("2 rules have problems")
        checks = page.get_by_test_id("rule-check")
        await expect(checks).to_have_count(3)
        await expect(checks.nth(0)).to_have_attribute("data-state", "bad")
        await expect(checks.nth(0)).to_contain_text("operator gt does not apply")
        await expect(checks.nth(1)).to_have_attribute("data-state", "ok")
        await expect(checks.nth(2)).to_contain_text("unknown fact 'budget'")
        # What was typed stays, to be fixed rather than retyped.
        await expect(page.locator("textarea[name=rules]")).to_have_value(re.compile('"budget"'))
        await expect(page.get_by_test_id("versions-count")).to_have_text("0")
        await screenshot(page, "scoring-draft-refused")

        # Shape errors (pydantic) land next to their rule as well.
        await fill_draft(page, [RULES[0], {**RULES[1], "points": 500}])
        await page.get_by_role("button", name="Save draft").click()
        await expect(checks.nth(1)).to_have_attribute("data-state", "bad")
        await expect(checks.nth(1)).to_contain_text("points")

        await fill_draft(page, RULES, threshold=50)
        await page.get_by_role("button", name="Save draft").click()
        await expect(page.locator(".notice--success")).to_contain_text("Draft 1 saved with 3 rules")
        row = page.locator("#versions-table tr[data-version='1']")
        await expect(row).to_contain_text("draft")
        await page.get_by_role("link", name="Open draft 1").click()

        await expect(page.locator("h1")).to_contain_text("Version 1")
        rules = page.locator("#rules-table tbody tr")
        await expect(rules).to_have_count(3)
        await expect(rules.nth(0)).to_contain_text("Based in the US")
        await expect(rules.nth(0)).to_contain_text("country equals US")
        await expect(rules.nth(0)).to_contain_text("+40")
        await expect(rules.nth(2)).to_contain_text("attributes.budget is at least 10000")
        await expect(page.get_by_test_id("threshold")).to_have_text("50")
        await expect(page.locator("#edit-draft")).to_be_visible()
        await expect(page.get_by_test_id("suggest")).to_have_count(0)

        await page.get_by_test_id("activate").click()
        run = page.get_by_test_id("rescore-run")
        await expect(run).to_have_attribute("data-status", "running")
        await expect(page.locator("#version-panel")).to_have_attribute("data-status", "active")
        await expect(page.get_by_test_id("activate")).to_have_count(0)
        await expect(page.locator("#edit-draft")).to_have_count(0)
        await screenshot(page, "scoring-rescoring")

        await run_jobs()  # the worker rescores; the card polls its run until it is done
        await expect(run).to_have_attribute("data-status", "done", timeout=15_000)
        await expect(run.locator("[data-count=done]")).to_have_text("2")
        await expect(run.locator("[data-count=total]")).to_have_text("2")
        await expect(run.locator("progress")).to_have_attribute("value", "100")

        quality = page.get_by_test_id("quality")
        await expect(quality.get_by_test_id("labelled")).to_have_text("0")
        await expect(page.get_by_test_id("quality-notes")).to_contain_text("No labelled leads yet")
        await expect(quality.locator("[data-metric=auc] .tile__value")).to_have_text("—")
        await expect(page.get_by_test_id("lift-chart")).to_have_attribute("data-drawn", "true")
        await expect(page.get_by_test_id("calibration-chart")).to_have_attribute(
            "data-drawn", "true"
        )

        await page.get_by_test_id("suggest").click()
        await expect(page.locator("#version-panel .notice--error")).to_contain_text(
            "at least 30 are needed"
        )
        await screenshot(page, "scoring-version")

        await page.goto("/console/scoring")
        await expect(page.locator("#versions-table tr[data-version='1']")).to_contain_text("active")
        # The next draft starts from the active version's rules.
        await expect(page.locator("textarea[name=rules]")).to_have_value(
            re.compile("attributes.budget")
        )


class TestRouting:
    async def test_setup_queue_timers_and_simulator_trace(
        self, page: Page, workspace: Workspace, screenshot: Screenshot
    ) -> None:
        await sign_in(page, workspace.manager_email)
        await page.locator("nav.sidebar").get_by_role("link", name="Routing").click()
        await expect(page.locator("h1")).to_have_text("Routing")

        rule = page.locator("#routing-rules tr[data-rule='US inbound']")
        await expect(rule).to_contain_text("country equals US")
        await expect(rule).to_contain_text("Inbound US")
        team = page.locator("article[data-team='Inbound US']")
        await expect(team).to_contain_text("round robin")
        await expect(team).to_contain_text("SLA 30 min")
        anna = team.locator("tr[data-rep='Anna Berg']")
        await expect(anna).to_contain_text("America/New_York")
        await expect(anna).to_contain_text("25")
        await expect(anna).to_contain_text("saas")
        await expect(anna).to_contain_text("active")
        await expect(team.locator("tr[data-rep='Ben Ortiz']")).to_contain_text("inactive")

        queue = page.locator("#work-queue tbody tr")
        await expect(queue).to_have_count(1)
        await expect(queue).to_contain_text("Alan Turing")
        await expect(queue).to_contain_text("No rule matched")
        timers = page.locator("#sla-timers tbody tr")
        await expect(timers).to_have_count(1)
        await expect(timers).to_contain_text("Grace Hopper")
        await expect(timers).to_contain_text("Anna Berg")
        await expect(timers).to_contain_text(re.compile(r"\d+ min left"))

        simulator = page.get_by_test_id("simulator")
        await simulator.locator("textarea[name=facts]").fill('{"country": "US", "score": 80}')
        await simulator.get_by_role("button", name="Simulate").click()
        decision = page.get_by_test_id("decision")
        await expect(decision).to_have_attribute("data-outcome", "assigned")
        await expect(decision).to_contain_text("Assigned to Anna Berg")
        trace = page.get_by_test_id("trace")
        await expect(trace.locator("[data-step=rule]")).to_contain_text("matched")
        await expect(trace.locator("[data-step=team]")).to_contain_text("Inbound US")
        reps = trace.locator("[data-step=rep]")
        await expect(reps).to_have_count(2)
        await expect(reps.filter(has_text="Ben Ortiz")).to_contain_text("dropped")
        await expect(reps.filter(has_text="Ben Ortiz").locator("[data-reason]")).to_have_text(
            "inactive"
        )
        await expect(reps.filter(has_text="Anna Berg")).to_contain_text("kept")
        await expect(trace.locator("[data-step=pick]")).to_contain_text("least recently assigned")
        await screenshot(page, "routing-simulated")

        await simulator.locator("textarea[name=facts]").fill('{"country": "FR"}')
        await simulator.get_by_role("button", name="Simulate").click()
        await expect(decision).to_have_attribute("data-outcome", "queued")
        rule_step = trace.locator("[data-step=rule]")
        await expect(rule_step).to_contain_text("not matched")
        await expect(rule_step).to_contain_text("the lead has FR")

        await simulator.locator("textarea[name=facts]").fill("{not json")
        await simulator.get_by_role("button", name="Simulate").click()
        await expect(page.locator("#facts-error")).to_contain_text("not valid JSON")

        await page.reload()  # the simulator wrote nothing
        await expect(page.locator("#work-queue tbody tr")).to_have_count(1)
        await expect(page.locator("#sla-timers tbody tr")).to_have_count(1)


class TestRepRole:
    async def test_rep_reads_both_pages_without_manage_buttons_and_is_refused(
        self, page: Page, workspace: Workspace, screenshot: Screenshot
    ) -> None:
        async with workspace.db.session(workspace.tenant.id) as session:
            draft = await _draft(session, workspace)
        await sign_in(page, workspace.rep_email)
        nav = page.locator("nav.sidebar")
        await expect(nav.get_by_role("link", name="ICP scoring")).to_be_visible()
        await expect(nav.get_by_role("link", name="Routing")).to_be_visible()

        await page.goto("/console/scoring")
        await expect(page.locator("#versions-table tbody tr")).to_have_count(1)
        await expect(page.get_by_test_id("draft-form")).to_have_count(0)
        await page.goto(f"/console/scoring/{draft}")
        await expect(page.locator("#rules-table tbody tr")).to_have_count(3)
        await expect(page.get_by_test_id("activate")).to_have_count(0)
        await expect(page.get_by_test_id("suggest")).to_have_count(0)
        await expect(page.locator("#edit-draft")).to_have_count(0)
        backtest = page.locator("#backtest-table tbody tr")
        await expect(backtest).to_have_count(3)
        await expect(backtest.nth(0)).to_contain_text("AUC")
        await expect(backtest.nth(0)).to_contain_text(re.compile(r"0\.\d{3}.*0\.\d{3}"))
        points = page.locator("#points-table tr[data-rule='us']")
        await expect(points).to_contain_text("Based in the US")
        await expect(points).to_contain_text(re.compile(r"\+40\s*→ [+-]\d+"))
        await screenshot(page, "scoring-as-rep")

        token = await csrf_token(page)
        form = {"csrf_token": token, "rules": json.dumps(RULES), "threshold": "60"}
        for path in (
            "/console/scoring",
            f"/console/scoring/{draft}",
            f"/console/scoring/{draft}/activate",
            f"/console/scoring/{draft}/suggest",
        ):
            response = await page.request.post(path, form=form, max_redirects=0)
            assert response.status == 403, (path, response.status)
        await page.reload()
        await expect(page.locator("#version-panel")).to_have_attribute("data-status", "draft")

        # Reading routing (and simulating, which writes nothing) is a rep's right.
        await page.goto("/console/routing")
        await expect(page.locator("#routing-rules tbody tr")).to_have_count(1)
        simulator = page.get_by_test_id("simulator")
        await simulator.get_by_role("button", name="Simulate").click()
        await expect(page.get_by_test_id("decision")).to_contain_text("Anna Berg")


async def _draft(session: AsyncSession, workspace: Workspace) -> uuid.UUID:
    """A draft as "suggest weights" leaves it: points fitted on synthetic outcomes (the pure
    fitter, as the service calls it), with both backtests kept beside them."""
    matches = [{"us": i % 2 == 0, "leader": i % 3 == 0, "big": i % 5 == 0} for i in range(40)]
    labels = [i % 2 == 0 and (i % 3 == 0 or i % 4 == 0) for i in range(40)]
    body = icp.RuleSetBody.model_validate({"rules": RULES, "threshold": 60})
    fitted = quality.suggest_weights(matches, labels, icp.rule_points(body), threshold=60)
    suggestion = json.loads(json.dumps(asdict(fitted)))
    draft = await scoring.create_draft(
        session, workspace.tenant.owner, body, now=utcnow(), suggestion=suggestion
    )
    return draft.id
