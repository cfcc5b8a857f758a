"""The console's per-country call rules: the table's rows as posted, checked row by row into the
maps `service.set_outreach_policy` takes (the browser test drives the same form end to end), and
the service storing each rule under the code the guard reads."""

from __future__ import annotations

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
from leadrelay.core.settings import Settings
from leadrelay.identity.models import Role, Tenant
from leadrelay.outreach import service
from leadrelay.outreach.local_time import WEEKDAYS
from tests.factories import TenantCtx, TenantFactory


def rules(*rows: CountryRow) -> tuple[CountryRules, dict[str, str]]:
    errors: dict[str, str] = {}
    return read_country_rules(list(rows), errors), errors


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
                ("country-2-cap", "5"),  # no code cell: no row
                ("country-100-code", "DE"),  # past the table's last row
                ("cap_email", "200"),
            ]
        )
        assert typed_country_rows(posted) == [
            CountryRow("GB", "", "09:00", "12:00", frozenset({0, 3})),
            CountryRow("FR", "2", "", "", frozenset()),
        ]

    def test_good_rows_become_the_two_maps(self) -> None:
        found, errors = rules(
            CountryRow("GB", "3", "09:00", "12:00", frozenset({0, 1})),
            CountryRow("FR", "0"),
            CountryRow("DE", "", "13:00", "24:00"),
            CountryRow(),  # added and left empty: skipped
        )
        assert errors == {}
        assert found == CountryRules(
            {"GB": 3, "FR": 0},
            {
                "GB": {"start": "09:00", "end": "12:00", "days": [0, 1]},
                "DE": {"start": "13:00", "end": "24:00", "days": [0, 1, 2, 3, 4]},
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
            (CountryRow("FR"), "cap", "a daily cap, call hours or both"),
            (CountryRow("FR", "", "17:00", "11:00"), "end", "Ends before it starts"),
            (CountryRow("FR", "", "11:00", "11:00"), "end", "Ends before it starts"),
            (CountryRow("FR", "", "11:00", ""), "end", "Give the end too"),
            (CountryRow("FR", "", "", "17:00"), "start", "Give the start too"),
            (CountryRow("FR", "", "9:00", "17:00"), "start", "HH:MM"),
            (CountryRow("FR", "", "24:00", "17:00"), "start", "HH:MM"),
            (CountryRow("FR", "", "11:00", "17:00", frozenset()), "days", "at least one day"),
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
            {"FR": 2, "GB": 3}, {"GB": {"start": "09:00", "end": "12:00", "days": [0, 1]}}
        )
        assert country_rows_of(stored) == [
            CountryRow("FR", "2", "", "", WEEKDAYS),
            CountryRow("GB", "3", "09:00", "12:00", frozenset({0, 1})),
        ]

    def test_a_window_stored_without_days_means_weekdays(self, settings: Settings) -> None:
        tenant = Tenant(
            settings={
                "outreach": {"country_call_windows": {"JP": {"start": "10:00", "end": "16:00"}}}
            }
        )
        view = service.outreach_policy(tenant, settings)
        assert stored_rules(view).windows == {
            "JP": {"start": "10:00", "end": "16:00", "days": [0, 1, 2, 3, 4]}
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
        },
        headers=await tenant.headers(Role.ADMIN),
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["country_call_caps"] == {"GB": 2}
    assert list(saved.json()["country_call_windows"]) == ["GB"]
