"""The approval queue in a real browser: pending drafts listed oldest first and filtered by
channel; a draft read with its evidence highlighted by confidence, its gap and the platform's
lines; approved with the `a` key, the next one opened with `j`, edited into revision 2 (its
diff line by line), the third rejected with a reason; an approval refused because another
session changed the text after the page loaded; bulk approval of the selection and of
everything shown, with four-eyes skips reported; and a rep who reads but cannot decide."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.async_api import Page, expect

from leadrelay.approvals import service
from leadrelay.approvals.models import Draft, DraftStatus
from leadrelay.core.clock import utcnow
from leadrelay.core.db import Database
from leadrelay.identity.models import Role
from leadrelay.identity.service import Principal
from tests.approvals.test_guard import person
from tests.e2e.conftest import Screenshot
from tests.e2e.test_console import sign_in
from tests.e2e.test_console_scoring_routing import csrf_token
from tests.factories import TenantCtx, TenantFactory
from tests.routing.test_routing_api import add_leads

pytestmark = pytest.mark.e2e

SUBJECT = "Navy Labs and your sales team"
STRONG = "I saw you lead sales at Navy Labs."
WEAK = "Teams your size usually route leads by hand."
ASK = "Would a short call next week help?"
COMPLIANCE = ["Unsubscribe: https://relay.example/u/abc", "LeadRelay Demo Ltd, 1 Main Street"]
# The platform's lines end the text a reviewer approves: they are part of what is sent.
BODY = f"Hi there,\n\n{STRONG} {WEAK}\n\n{ASK}\n\n" + "\n".join(COMPLIANCE)
SMS_BODY = f"{STRONG} {ASK}\n" + "\n".join(COMPLIANCE)


def evidence(field: str, value: str, source: str, observed: str, confidence: str) -> dict[str, Any]:
    return {
        "field": field,
        "value": value,
        "source": source,
        "observed_at": observed,
        "confidence": confidence,
        "sources": [source],
    }


def sentences(body: str) -> list[dict[str, Any]]:
    """One sentence resting on CRM data (high), one on a guess (low), one on nothing."""
    facts = {
        STRONG: (
            "high",
            [
                evidence("title", "VP Sales", "crm-sync", "2024-05-02T09:00:00+00:00", "high"),
                evidence("company", "Navy Labs", "web-form", "2024-04-30T12:00:00+00:00", "high"),
            ],
        ),
        WEAK: (
            "low",
            [evidence("employees", "50-200", "enrichment-guess", "2023-11-20", "low")],
        ),
        ASK: (None, []),
    }
    found = []
    for text, (confidence, items) in facts.items():
        start = body.find(text)
        if start >= 0:
            found.append(
                {
                    "text": text,
                    "start": start,
                    "end": start + len(text),
                    "evidence": items,
                    "confidence": confidence,
                }
            )
    return found


async def make_pending(
    db: Database, tenant: TenantCtx, author: Principal, name: str, channel: str = "email"
) -> uuid.UUID:
    """A submitted draft for a new lead, written by `author` with sentence-level evidence."""
    lead_id = (await add_leads(db, tenant, 1, full_name=name, company="Navy Labs"))[0]
    subject, body = (SUBJECT, BODY) if channel == "email" else (None, SMS_BODY)
    async with db.session(tenant.id) as session:
        draft = Draft(
            tenant_id=tenant.id,
            lead_id=lead_id,
            channel=channel,
            template=f"builtin:{channel}-friendly",
            tone="friendly",
            length="short",
            cta="book_call",
            origin="template",
            llm_note="LLM drafting is off for this workspace",
            status=DraftStatus.DRAFT,
            created_by_type=author.kind,
            created_by_id=str(author.id),
            created_by=author.name,
        )
        session.add(draft)
        await session.flush()
        content = service.RevisionContent(
            subject, body, sentences=sentences(body), gaps=["city"], compliance=COMPLIANCE
        )
        await service.add_revision(session, author, draft, content, now=utcnow())
        await service.submit(session, author, draft.id, policy=service.Policy(), now=utcnow())
        return draft.id


@dataclass
class Workspace:
    tenant: TenantCtx
    db: Database
    reviewer_email: str
    rep_email: str
    drafts: list[uuid.UUID]  # D1..D4 e-mail, D5 sms, submitted in this order


@pytest.fixture
async def workspace(tenants: TenantFactory, db: Database) -> Workspace:
    tenant = await tenants.create("Review Co")
    author = person(tenant, "Rita Rep", Role.REP)
    drafts = [
        await make_pending(db, tenant, author, "Grace Hopper"),
        await make_pending(db, tenant, author, "Alan Turing"),
        await make_pending(db, tenant, author, "Ada Lovelace"),
        await make_pending(db, tenant, author, "Edsger Dijkstra"),
        await make_pending(db, tenant, author, "Barbara Liskov", channel="sms"),
    ]
    return Workspace(
        tenant, db, await tenant.user(Role.REVIEWER), await tenant.user(Role.REP), drafts
    )


def row(page: Page, draft_id: uuid.UUID) -> Any:
    return page.locator(f"[data-testid=queue-row][data-draft-id='{draft_id}']")


class TestReview:
    async def test_queue_evidence_shortcuts_edit_reject_stale_and_bulk(
        self, page: Page, workspace: Workspace, screenshot: Screenshot
    ) -> None:
        d1, d2, d3, d4, sms = workspace.drafts
        await sign_in(page, workspace.reviewer_email)
        await page.locator("nav.sidebar").get_by_role("link", name="Approvals").click()
        await expect(page.locator("h1")).to_have_text("Approvals")
        rows = page.get_by_test_id("queue-row")
        await expect(rows).to_have_count(5)
        # Oldest first, each with its lead, channel and origin.
        await expect(rows.first).to_have_attribute("data-draft-id", str(d1))
        await expect(rows.first).to_contain_text("Grace Hopper")
        await expect(rows.first.get_by_role("link", name="Grace Hopper")).to_have_attribute(
            "href", re.compile(r"/console/leads/[0-9a-f-]{36}$")
        )
        await expect(row(page, sms)).to_contain_text("sms")
        await expect(rows.first).to_contain_text("template")
        await expect(rows.first).to_contain_text("Rita Rep")
        await expect(rows.first).to_contain_text(re.compile(r"6 d \d+ h"))
        await screenshot(page, "approvals-queue")

        await page.get_by_test_id("channel-filter").select_option("sms")
        await expect(rows).to_have_count(1)
        await expect(page).to_have_url(re.compile(r"channel=sms"))
        await page.get_by_test_id("channel-filter").select_option("")
        await expect(rows).to_have_count(5)

        # --- D1: the evidence, the gap, the platform's lines; approved with `a` ---------------
        await row(page, d1).get_by_test_id("review-link").click()
        await expect(page.locator("h1")).to_contain_text("Grace Hopper")
        await expect(page.locator("h1")).to_contain_text("pending")
        body = page.get_by_test_id("draft-body")
        high, low = body.locator("mark.evidence--high"), body.locator("mark.evidence--low")
        await expect(high).to_have_count(1)
        await expect(high).to_contain_text(STRONG)
        await expect(high).to_have_attribute("title", re.compile(r"source: crm-sync"))
        await expect(high).to_have_attribute("title", re.compile(r"observed 02 May 2024"))
        await expect(high).to_have_attribute("title", re.compile(r"company = Navy Labs"))
        await expect(low).to_have_count(1)
        await expect(low).to_contain_text(WEAK)
        await expect(low).to_have_attribute("title", re.compile(r"enrichment-guess"))
        await expect(body.locator("mark")).to_have_count(2)  # the ask rests on nothing
        facts = page.get_by_test_id("evidence")
        await expect(facts.locator("[data-confidence=high]")).to_contain_text("crm-sync")
        await expect(facts.locator("[data-confidence=high]")).to_contain_text("VP Sales")
        await expect(facts.locator("[data-confidence=low]")).to_contain_text("enrichment-guess")
        await expect(facts.locator("[data-confidence=low]")).to_contain_text("20 Nov 2023")
        gap = page.locator("[data-testid=gap][data-field=city]")
        await expect(gap).to_be_visible()
        await expect(gap).to_contain_text("no value for city")
        await expect(page.get_by_test_id("compliance")).to_contain_text("Added by the platform")
        await expect(page.get_by_test_id("compliance")).to_contain_text(COMPLIANCE[0])
        await expect(body).to_contain_text(COMPLIANCE[0])  # approved as it will be sent
        await expect(page.get_by_test_id("draft-subject")).to_contain_text(SUBJECT)
        await expect(page.get_by_test_id("llm-note")).to_contain_text("LLM drafting is off")
        await expect(page.get_by_test_id("shortcuts")).to_have_text(
            "Shortcuts: a approve · r reject · e edit · j/k next/previous"
        )
        await screenshot(page, "approvals-draft-evidence")

        await page.keyboard.press("a")
        await expect(page.get_by_test_id("draft-status")).to_have_text("approved")
        await expect(page.locator(".notice--success")).to_contain_text("Approved revision 1")
        await expect(
            page.locator("[data-testid=decision][data-decision=approved]")
        ).to_contain_text("revision 1")
        await expect(page.get_by_test_id("approve")).to_have_count(0)

        # --- `j` opens D2; `e` opens the edit form; revision 2 and its diff ---------------------
        await page.keyboard.press("j")
        await expect(page).to_have_url(re.compile(f"/console/approvals/{d2}$"))
        await expect(page.locator("h1")).to_contain_text("Alan Turing")
        # D1 left the queue when approved: nothing before D2 is waiting.
        await expect(page.locator("a[data-shortcut=previous]")).to_have_count(0)
        await expect(page.locator("#edit-draft")).not_to_have_attribute("open", "")
        await page.keyboard.press("e")
        editor = page.locator("#edit-draft textarea[name=body]")
        await expect(editor).to_be_focused()
        await expect(editor).to_have_value(BODY)  # the key opened the form, typed nothing
        await editor.fill(BODY.replace("next week", "on Thursday"))
        await page.get_by_test_id("save-edit").click()
        await expect(page.locator(".notice--success")).to_contain_text("Saved as revision 2")
        await expect(page.locator("#draft-panel")).to_have_attribute("data-revision", "2")
        await expect(page.get_by_test_id("draft-text").locator("h2")).to_contain_text("Revision 2")
        await expect(page.get_by_test_id("revision")).to_have_count(2)
        diff = page.locator("[data-testid=revision][data-revision='2'] [data-testid=diff]")
        await expect(diff.locator(".diff__file")).to_have_text(["--- revision 1", "+++ revision 2"])
        await expect(diff.locator(".diff__del")).to_have_text(["-" + ASK])
        await expect(diff.locator(".diff__add")).to_have_text(
            ["+" + ASK.replace("next week", "on Thursday")]
        )
        # Sentences left as they were keep their evidence; the reviewer's own has none.
        marks = page.get_by_test_id("draft-body").locator("mark")
        await expect(marks).to_have_count(2)
        await expect(marks.filter(has_text="on Thursday")).to_have_count(0)
        await expect(page.get_by_test_id("draft-status")).to_have_text("pending")
        await page.evaluate("window.scrollTo(0, 0)")
        await screenshot(page, "approvals-draft-revision-2")

        # --- D3: `r` focuses the reason; rejected -------------------------------------------
        await page.keyboard.press("j")
        await expect(page).to_have_url(re.compile(f"/console/approvals/{d3}$"))
        await page.keyboard.press("k")
        await expect(page).to_have_url(re.compile(f"/console/approvals/{d2}$"))
        await page.keyboard.press("j")
        await expect(page).to_have_url(re.compile(f"/console/approvals/{d3}$"))
        await page.keyboard.press("r")
        reason = page.locator("textarea[name=reason]")
        await expect(reason).to_be_focused()
        await expect(reason).to_have_value("")
        await reason.fill("Too pushy for a first message; drop the size guess.")
        await page.get_by_test_id("reject").click()
        await expect(page.get_by_test_id("draft-status")).to_have_text("rejected")
        await expect(
            page.locator("[data-testid=decision][data-decision=rejected]")
        ).to_contain_text("drop the size guess")

        # --- D4: another session edits after the page loaded: the approval is refused --------
        await page.goto(f"/console/approvals/{d4}")
        await expect(page.get_by_test_id("approve")).to_have_text(re.compile("revision 1"))
        async with workspace.db.session(workspace.tenant.id) as session:
            await service.edit(
                session,
                person(workspace.tenant, "Mona Manager"),
                d4,
                subject=SUBJECT,
                body=BODY.replace("Hi there", "Hello Edsger"),
                now=utcnow(),
            )
        await page.keyboard.press("a")
        refusal = page.locator(".notice--error")
        await expect(refusal).to_contain_text("changed while you were reading it")
        await expect(refusal).to_contain_text("you saw revision 1, revision 2 is now current")
        await expect(page.get_by_test_id("draft-status")).to_have_text("pending")
        await expect(page.get_by_test_id("draft-body")).to_contain_text("Hello Edsger")
        await expect(page.get_by_test_id("approve")).to_have_text(re.compile("revision 2"))
        await screenshot(page, "approvals-stale-refused")

        # --- the queue: bulk approval, four-eyes skips reported -----------------------------
        async with workspace.db.session(workspace.tenant.id) as session:
            await service.set_policy(
                session,
                workspace.tenant.owner,
                approval_required=None,
                four_eyes=True,
                confirmation=None,
                now=utcnow(),
            )
        await page.goto("/console/approvals")
        await expect(rows).to_have_count(3)  # D2 (edited by this reviewer), D4, the sms
        await row(page, d2).locator("input[name=lead_id]").check()
        await row(page, sms).locator("input[name=lead_id]").check()
        await page.get_by_test_id("approve-selected").click()
        notices = page.get_by_test_id("queue-notices")
        await expect(notices.locator(".notice--success")).to_have_text(
            re.compile("Approved 1 draft, skipped 1")
        )
        await expect(notices.locator(".notice--warning")).to_contain_text(
            "Skipped 1 (Alan Turing): four-eyes"
        )
        await expect(rows).to_have_count(2)
        await expect(row(page, sms)).to_have_count(0)
        await screenshot(page, "approvals-bulk-selected")

        await page.get_by_test_id("approve-shown").click()  # confirmed by the page fixture
        await expect(notices.locator(".notice--success")).to_have_text(
            re.compile("Approved 1 draft, skipped 1")
        )
        await expect(rows).to_have_count(1)
        await expect(row(page, d2)).to_be_visible()

        # Nothing selected: refused, nothing approved.
        await page.get_by_test_id("approve-selected").click()
        await expect(page.locator(".notice--error")).to_contain_text("Select at least one draft")
        await expect(rows).to_have_count(1)


class TestReadOnly:
    async def test_a_rep_reads_the_queue_and_drafts_but_cannot_decide(
        self, page: Page, workspace: Workspace, screenshot: Screenshot
    ) -> None:
        d1 = workspace.drafts[0]
        await sign_in(page, workspace.rep_email)
        await page.locator("nav.sidebar").get_by_role("link", name="Approvals").click()
        await expect(page.get_by_test_id("queue-row")).to_have_count(5)
        await expect(page.locator("input[name=lead_id]")).to_have_count(0)
        await expect(page.get_by_test_id("approve-selected")).to_have_count(0)
        await expect(page.get_by_test_id("approve-shown")).to_have_count(0)

        await row(page, d1).get_by_test_id("review-link").click()
        await expect(page.locator("h1")).to_contain_text("Grace Hopper")
        await expect(page.get_by_test_id("draft-body").locator("mark")).to_have_count(2)
        await expect(page.get_by_test_id("draft-actions")).to_have_count(0)
        await expect(page.get_by_test_id("read-only")).to_contain_text(
            "can read drafts but not decide"
        )
        await page.keyboard.press("a")  # no approve button: the key does nothing
        await expect(page.get_by_test_id("draft-status")).to_have_text("pending")
        await screenshot(page, "approvals-draft-read-only")

        token = await csrf_token(page)
        for path, form in (
            (f"/console/approvals/{d1}/approve", {"revision": "1"}),
            (f"/console/approvals/{d1}/reject", {"reason": "no", "revision": "1"}),
            (f"/console/approvals/{d1}/edit", {"subject": "x", "body": "y", "revision": "1"}),
            ("/console/approvals/bulk", {"scope": "shown", "shown": str(uuid.uuid4())}),
        ):
            response = await page.request.post(path, form={"csrf_token": token, **form})
            assert response.status == 403, (path, response.status)
        async with workspace.db.session(workspace.tenant.id) as session:
            draft = await service.get_draft(session, d1)
            assert draft.status == DraftStatus.PENDING
            assert draft.current_revision == 1
