"""The console's per-country rules (a call cap, call hours, SMS/WhatsApp hours): the table's rows
as posted, checked row by row into the maps `service.set_outreach_policy` takes (the browser
test drives the same form end to end); the service and the API checking each window the same
way, storing it under the code the guard reads and asking for the typed confirmation when it
is wider than the default; and the guard reading a country's message hours."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from starlette.datastructures import FormData

from leadrelay.console.outreach import (
    CountryRow,
    CountryRules,
    country_rows_of,
    edit_rows,
    read_country_rules,
    stored_rules,
    typed_country_rows,
)
from leadrelay.core.clock import utcnow
from leadrelay.core.errors import ValidationFailed
from leadrelay.core.settings import Settings
from leadrelay.drafting.evidence import Channel
from leadrelay.identity.models import Role, Tenant
from leadrelay.outreach import service
from leadrelay.outreach.local_time import EVERY_DAY, WEEKDAYS
from leadrelay.outreach.policy import (
    CALL_HOURS,
    MESSAGE_HOURS,
    Check,
    OutboundMessage,
    Policy,
    decide,
)
from tests.factories import TenantCtx, TenantFactory
from tests.outreach.test_policy import facts

PARIS = ZoneInfo("Europe/Paris")
FRENCH_MOBILE = "+33612345678"


def rules(*rows: CountryRow) -> tuple[CountryRules, dict[str, str]]:
    errors: dict[str, str] = {}
    return read_country_rules(list(rows), errors), errors


def message_hours(start: str, end: str, days: frozenset[int] = EVERY_DAY) -> CountryRow:
    return CountryRow("FR", message_start=start, message_end=end, message_days=days)


class TestReadingRows:
    def test_posted_cells_make_rows_in_row_order(self) -> None:
        posted = FormData(
            [
                ("country-1-code", "fr"),
                ("country-1-cap", " 2 "),
                ("country-0-code", "GB"),
                ("country-0-start", "09:00"),
                ("country-0-end", "12:00"),
                ("country-0-days", "0"),
                ("country-0-days", "3"),
                ("country-0-days", "9"),  # no such day: ignored
                ("country-1-message_start", "09:00"),
                ("country-1-message_end", "20:00"),
                ("country-1-message_days", "5"),
                ("country-2-cap", "5"),  # no code cell: no row
                ("country-100-code", "DE"),  # past the table's last row
                ("cap_email", "200"),
            ]
        )
        assert typed_country_rows(posted) == [
            CountryRow("GB", "", "09:00", "12:00", frozenset({0, 3}), "", "", frozenset()),
            CountryRow("FR", "2", "", "", frozenset(), "09:00", "20:00", frozenset({5})),
        ]

    def test_good_rows_become_the_three_maps(self) -> None:
        found, errors = rules(
            CountryRow("GB", "3", "09:00", "12:00", frozenset({0, 1})),
            CountryRow("FR", "0", message_start="09:00", message_end="20:00"),
            CountryRow("DE", "", "13:00", "24:00"),
            CountryRow("ES", message_start="10:00", message_end="14:00", message_days=WEEKDAYS),
            CountryRow(),  # added and left empty: skipped
        )
        assert errors == {}
        assert found == CountryRules(
            {"GB": 3, "FR": 0},
            {
                "GB": {"start": "09:00", "end": "12:00", "days": [0, 1]},
                "DE": {"start": "13:00", "end": "24:00", "days": [0, 1, 2, 3, 4]},
            },
            {
                "FR": {"start": "09:00", "end": "20:00", "days": [0, 1, 2, 3, 4, 5, 6]},
                "ES": {"start": "10:00", "end": "14:00", "days": [0, 1, 2, 3, 4]},
            },
        )

    @pytest.mark.parametrize(
        ("row", "field", "message"),
        [
            (CountryRow("ZZ", "1"), "code", "ZZ is not an ISO 3166 alpha-2 country code."),
            (CountryRow("UK", "1"), "code", "Did you mean GB?"),
            (CountryRow("FRA", "1"), "code", "Did you mean FR?"),
            (CountryRow("", "1"), "code", "two-letter ISO 3166 code"),
            (CountryRow("FR", "-1"), "cap", "A whole number from 0 to 1,000,000"),
            (CountryRow("FR", "2.5"), "cap", "A whole number"),
            (CountryRow("FR"), "cap", "a daily cap, call hours or message hours"),
            (CountryRow("FR", "", "17:00", "11:00"), "end", "Ends before it starts"),
            (CountryRow("FR", "", "11:00", "11:00"), "end", "Ends before it starts"),
            (CountryRow("FR", "", "11:00", ""), "end", "Give the end too"),
            (CountryRow("FR", "", "", "17:00"), "start", "Give the start too"),
            (CountryRow("FR", "", "9:00", "17:00"), "start", "HH:MM"),
            (CountryRow("FR", "", "24:00", "17:00"), "start", "HH:MM"),
            (CountryRow("FR", "", "11:00", "17:00", frozenset()), "days", "at least one day"),
            (message_hours("21:00", "08:00"), "message_end", "Ends before it starts"),
            (message_hours("", "20:00"), "message_start", "Give the start too"),
            (message_hours("09:00", ""), "message_end", "Give the end too"),
            (message_hours("9h", "20:00"), "message_start", "HH:MM"),
            (message_hours("09:00", "20:00", frozenset()), "message_days", "at least one day"),
        ],
    )
    def test_each_mistake_is_named_at_its_field(
        self, row: CountryRow, field: str, message: str
    ) -> None:
        found, errors = rules(CountryRow("DE", "1"), row)
        assert message in errors[f"country-1-{field}"]
        assert "country-0-code" not in errors
        assert found.caps.get("DE") == 1

    def test_a_country_has_one_row(self) -> None:
        _, errors = rules(CountryRow("FR", "1"), CountryRow("FR", "2"))
        assert errors == {"country-1-code": "FR has a row already: one row per country."}


class TestTheTable:
    def test_stored_rules_read_back_as_rows(self) -> None:
        stored = CountryRules(
            {"FR": 2, "GB": 3},
            {"GB": {"start": "09:00", "end": "12:00", "days": [0, 1]}},
            {"IT": {"start": "10:00", "end": "19:00", "days": [5, 6]}},
        )
        assert country_rows_of(stored) == [
            CountryRow("FR", "2", "", "", WEEKDAYS),
            CountryRow("GB", "3", "09:00", "12:00", frozenset({0, 1})),
            CountryRow(
                "IT", message_start="10:00", message_end="19:00", message_days=frozenset({5, 6})
            ),
        ]

    def test_a_window_stored_without_days_has_the_defaults_days(self, settings: Settings) -> None:
        """Calls on weekdays, messages every day: as the guard reads the rule."""
        hours = {"start": "10:00", "end": "16:00"}
        tenant = Tenant(
            settings={
                "outreach": {
                    "country_call_windows": {"JP": hours},
                    "country_message_windows": {"JP": hours},
                }
            }
        )
        view = service.outreach_policy(tenant, settings)
        assert stored_rules(view).call_windows == {"JP": {**hours, "days": [0, 1, 2, 3, 4]}}
        assert stored_rules(view).message_windows == {
            "JP": {**hours, "days": [0, 1, 2, 3, 4, 5, 6]}
        }

    def test_rows_are_added_and_removed_without_saving(self) -> None:
        rows = [CountryRow("FR", "1"), CountryRow("GB", "2")]
        added = edit_rows(rows, "add")
        assert added is not None
        assert "Row added" in added.text
        assert rows[-1] == CountryRow()
        removed = edit_rows(rows, "remove-0")
        assert removed is not None
        assert "The row for FR is removed" in removed.text
        assert [row.code for row in rows] == ["GB", ""]
        assert edit_rows(rows, "remove-7") is None  # no such row: nothing happens
        assert edit_rows(rows, "remove-x") is None
        assert len(rows) == 2


@pytest.fixture
async def tenant(tenants: TenantFactory) -> TenantCtx:
    return await tenants.create()


class TestHoursThroughTheApi:
    async def test_message_hours_are_checked_like_call_hours_at_each_field(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        admin = await tenant.headers(Role.ADMIN)
        refused = await client.patch(
            "/v1/outreach/policy",
            json={
                "country_message_windows": {
                    "ZZ": {"start": "09:00", "end": "20:00"},
                    "FR": {"start": "20:00", "end": "09:00"},
                    "DE": {"start": "12:00", "end": "12:00"},
                },
                "country_call_windows": {"ES": {"start": "17:00", "end": "11:00"}},
            },
            headers=admin,
        )
        assert refused.status_code == 422
        reasons = {e["field"]: e["reason"] for e in refused.json()["errors"]}
        assert reasons == {
            "country_call_windows.ES": "ends before it starts: choose an end after 17:00 "
            "(or 24:00)",
            "country_message_windows.ZZ": "'ZZ' is not an ISO 3166 country code",
            "country_message_windows.FR": "ends before it starts: choose an end after 20:00 "
            "(or 24:00)",
            "country_message_windows.DE": "window 12:00–12:00 is ambiguous; write 00:00–24:00",
        }
        no_day = await client.patch(
            "/v1/outreach/policy",
            json={
                "country_message_windows": {"FR": {"start": "09:00", "end": "20:00", "days": []}}
            },
            headers=admin,
        )
        assert no_day.status_code == 422
        assert no_day.json()["errors"][0]["field"] == "country_message_windows.FR.days"
        stored = await client.get("/v1/outreach/policy", headers=admin)
        assert stored.json()["country_message_windows"] == {}

    async def test_the_service_refuses_hours_on_no_day(
        self, tenant: TenantCtx, settings: Settings
    ) -> None:
        """What the API's schema refuses first, the service refuses for every other caller."""
        async with tenant.db.session(tenant.id) as session:
            with pytest.raises(ValidationFailed) as refused:
                await service.set_outreach_policy(
                    session,
                    tenant.owner,
                    settings,
                    dry_run=None,
                    daily_caps=None,
                    domain_hourly_cap=None,
                    cooldown_days=None,
                    confirmation=None,
                    now=utcnow(),
                    country_message_windows={"FR": {"start": "09:00", "end": "20:00", "days": []}},
                )
        assert refused.value.errors == [
            {"field": "country_message_windows.FR", "reason": "choose at least one day"}
        ]

    async def test_hours_within_the_default_need_no_confirmation(
        self, client: httpx.AsyncClient, tenant: TenantCtx
    ) -> None:
        saved = await client.patch(
            "/v1/outreach/policy",
            json={
                "country_message_windows": {"FR": {"start": "09:00", "end": "20:00"}},
                "country_call_windows": {"FR": {"start": "11:00", "end": "17:00", "days": [0]}},
            },
            headers=await tenant.headers(Role.ADMIN),
        )
        assert saved.status_code == 200, saved.text
        assert saved.json()["country_message_windows"] == {
            "FR": {"start": "09:00", "end": "20:00", "days": [0, 1, 2, 3, 4, 5, 6]}
        }

    @pytest.mark.parametrize(
        ("field", "rule", "reason"),
        [
            (
                "country_message_windows",
                {"start": "07:30", "end": "20:00"},
                "every day 07:30–20:00 is wider than the default (every day 08:00–21:00)",
            ),
            ("country_message_windows", {"start": "09:00", "end": "24:00"}, "wider"),
            ("country_call_windows", {"start": "11:00", "end": "17:30"}, "wider"),
            (
                "country_call_windows",
                {"start": "12:00", "end": "16:00", "days": [5]},
                "Sat 12:00–16:00 is wider than the default (Mon–Fri 11:00–17:00)",
            ),
        ],
    )
    async def test_hours_wider_than_the_default_need_the_confirmation_once(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCtx,
        field: str,
        rule: dict[str, object],
        reason: str,
    ) -> None:
        admin = await tenant.headers(Role.ADMIN)
        refused = await client.patch(
            "/v1/outreach/policy", json={field: {"fr": rule}}, headers=admin
        )
        assert refused.status_code == 422
        assert "widening a country's hours" in refused.json()["detail"]
        [confirmation, risk] = refused.json()["errors"]
        assert confirmation["field"] == "confirmation"
        assert risk["field"] == f"{field}.fr"
        assert reason in risk["reason"]

        confirmed = await client.patch(
            "/v1/outreach/policy",
            json={field: {"fr": rule}, "confirmation": service.LIVE_CONFIRMATION},
            headers=admin,
        )
        assert confirmed.status_code == 200, confirmed.text
        assert list(confirmed.json()[field]) == ["FR"]
        # The whole map saved again for another country: FR's hours, confirmed, are not asked
        # about again.
        narrow = {"start": "12:00", "end": "16:00", "days": [0]}
        again = await client.patch(
            "/v1/outreach/policy", json={field: {"FR": rule, "DE": narrow}}, headers=admin
        )
        assert again.status_code == 200, again.text
        events = (
            await client.get(
                "/v1/audit", params={"action": "outreach.policy_changed"}, headers=admin
            )
        ).json()
        assert [e["data"]["confirmed"] for e in events] == [[], [f"{field}.fr"]]


async def test_a_country_alias_is_stored_under_its_iso_code(
    client: httpx.AsyncClient, tenant: TenantCtx
) -> None:
    """ "uk" is accepted as Great Britain, and stored as GB: the code a recipient's number
    gives, so the rule reaches them."""
    saved = await client.patch(
        "/v1/outreach/policy",
        json={
            "country_call_caps": {"uk": 2},
            "country_call_windows": {"uk": {"start": "10:00", "end": "12:00"}},
            "country_message_windows": {"uk": {"start": "09:00", "end": "20:00"}},
            "confirmation": service.LIVE_CONFIRMATION,  # calls from 10:00: wider than 11:00
        },
        headers=await tenant.headers(Role.ADMIN),
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["country_call_caps"] == {"GB": 2}
    assert list(saved.json()["country_call_windows"]) == ["GB"]
    assert list(saved.json()["country_message_windows"]) == ["GB"]


async def test_a_country_given_twice_under_two_spellings_is_refused_at_the_field(
    client: httpx.AsyncClient, tenant: TenantCtx
) -> None:
    """Stored by code, "uk" and "GB" would be one rule, the other silently dropped."""
    refused = await client.patch(
        "/v1/outreach/policy",
        json={
            "country_call_caps": {"GB": 3, "uk": 2},
            "country_message_windows": {"GB": {"start": "09:00", "end": "20:00"}},
        },
        headers=await tenant.headers(Role.ADMIN),
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"] == [
        {"field": "country_call_caps.uk", "reason": "'uk' and 'GB' both name GB: keep one"}
    ]


class TestTheGuardReadsMessageHours:
    async def test_a_french_sms_waits_for_the_fr_hours_where_the_default_would_send(
        self, client: httpx.AsyncClient, tenant: TenantCtx, settings: Settings
    ) -> None:
        saved = await client.patch(
            "/v1/outreach/policy",
            json={"country_message_windows": {"FR": {"start": "09:00", "end": "20:00"}}},
            headers=await tenant.headers(Role.ADMIN),
        )
        assert saved.status_code == 200, saved.text
        async with tenant.db.session(tenant.id) as session:
            row = await session.get(Tenant, tenant.id)
            assert row is not None
            policy = service.guard_policy(service.outreach_policy(row, settings))

        evening = datetime(2025, 6, 2, 20, 30, tzinfo=PARIS)  # Monday
        sms = OutboundMessage(Channel.SMS, FRENCH_MOBILE)
        assert decide(sms, facts(), Policy(), evening).allowed  # quiet hours start at 21:00
        decision = decide(sms, facts(), policy, evening)
        assert decision.blocked_by == Check.LOCAL_TIME
        assert decision.retry_at == datetime(2025, 6, 3, 9, 0, tzinfo=PARIS)
        assert "it is Monday 20:30 in Europe/Paris" in (decision.reason or "")
        assert "SMS allowed every day 09:00–20:00 (the override for FR)" in (decision.reason or "")
        # At 21:30 both say no, but the FR hours say until when: 09:00, not the default's 08:00.
        late = decide(sms, facts(), policy, evening + timedelta(hours=1))
        assert late.retry_at == datetime(2025, 6, 3, 9, 0, tzinfo=PARIS)
        assert "(the override for FR)" in (late.reason or "")

        whatsapp = OutboundMessage(Channel.WHATSAPP, FRENCH_MOBILE)
        assert decide(whatsapp, facts(), policy, evening).blocked_by == Check.LOCAL_TIME
        # Calls there keep the default call hours; other countries the default quiet hours.
        assert policy.windows_for(Channel.VOICE, "FR") == (CALL_HOURS, "the default")
        assert policy.windows_for(Channel.SMS, "DE") == (MESSAGE_HOURS, "the default")
