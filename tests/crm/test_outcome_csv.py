"""Outcome CSV files: good rows, each kind of row error with its line number, ids stable from
one import of a file to the next, and files refused as a whole."""

from __future__ import annotations

import hashlib
import shutil
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from leadrelay.crm.outcome_csv import OutcomeCsvRefused, parse_outcomes_csv
from leadrelay.crm.outcomes import OutcomeLabel, OutcomeRecord

LEAD = uuid.UUID("0b5f4a8e-7d1c-4f43-9a51-2f8d6c3e9b10")
HEADER = "outcome,closed_at,amount,currency,lead_id,email,external_id\n"


def write(tmp_path: Path, text: str | bytes, name: str = "outcomes.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def default_id(line: int, row: str) -> str:
    """The id a row without external_id gets: line, then the row's cells hashed."""
    cells = row.rstrip("\n").split(",")
    return f"csv:{line}:{hashlib.sha256(chr(0x1F).join(cells).encode()).hexdigest()[:16]}"


def test_good_rows_become_records(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "Outcome,Closed At,Amount,Currency,Lead ID,E-mail,External ID,Notes\n"
        "WON,2024-05-14,1500.00,eur,,Jose@Muller-GmbH.de,deal-1,renewal\n"
        f"lost,2024-05-15T10:00:00+02:00,,,{LEAD},,,\n"
        "Disqualified,2024-05-16T09:30:00Z,0,USD,,zoe@alander.se,,\n"
        f" won , 2024-05-17T09:30:00 ,12.5,,{LEAD},ana@example.com,deal-4,\n",
    )

    rows = list(parse_outcomes_csv(path))

    assert rows == [
        (
            2,
            OutcomeRecord(
                source="csv",
                external_id="deal-1",
                label=OutcomeLabel.WON,
                closed_at=datetime(2024, 5, 14, tzinfo=UTC),
                amount=Decimal("1500.00"),
                currency="EUR",
                emails=("jose@muller-gmbh.de",),
            ),
            [],
        ),
        (
            3,
            OutcomeRecord(
                source="csv",
                external_id=default_id(3, f"lost,2024-05-15T10:00:00+02:00,,,{LEAD},,,"),
                label=OutcomeLabel.LOST,
                closed_at=datetime(2024, 5, 15, 8, 0, tzinfo=UTC),
                amount=None,
                currency=None,
                emails=(),
                lead_id=LEAD,
            ),
            [],
        ),
        (
            4,
            OutcomeRecord(
                source="csv",
                external_id=default_id(
                    4, "Disqualified,2024-05-16T09:30:00Z,0,USD,,zoe@alander.se,,"
                ),
                label=OutcomeLabel.DISQUALIFIED,
                closed_at=datetime(2024, 5, 16, 9, 30, tzinfo=UTC),
                amount=Decimal("0"),
                currency="USD",
                emails=("zoe@alander.se",),
            ),
            [],
        ),
        (
            5,
            OutcomeRecord(
                source="csv",
                external_id="deal-4",
                label=OutcomeLabel.WON,
                closed_at=datetime(2024, 5, 17, 9, 30, tzinfo=UTC),  # no offset: UTC
                amount=Decimal("12.5"),
                currency=None,
                emails=("ana@example.com",),
                lead_id=LEAD,
            ),
            [],
        ),
    ]


def test_semicolons_and_windows_1252_are_detected(tmp_path: Path) -> None:
    text = "Outcome;Closed_at;Amount;Email;Kommentar\nwon;2024-05-14;99.90;jose@muller.de;Müller\n"
    path = write(tmp_path, text.encode("cp1252"))

    [(line, record, errors)] = list(parse_outcomes_csv(path))

    assert (line, errors) == (2, [])
    assert record is not None
    assert (record.label, record.amount, record.emails) == (
        OutcomeLabel.WON,
        Decimal("99.90"),
        ("jose@muller.de",),
    )


def test_every_row_error_with_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + "maybe,2024-05-14,,,,a@example.com,\n"  # 2
        + ",2024-05-14,,,,a@example.com,\n"  # 3
        + "won,14/05/2024,,,,a@example.com,\n"  # 4
        + "won,,,,,a@example.com,\n"  # 5
        + "won,2024-05-14,-3,,,a@example.com,\n"  # 6
        + "won,2024-05-14,NaN,,,a@example.com,\n"  # 7
        + 'won,2024-05-14,"1,500",,,a@example.com,\n'  # 8
        + "won,2024-05-14,,EURO,,a@example.com,\n"  # 9
        + "won,2024-05-14,,,not-a-uuid,,\n"  # 10
        + "won,2024-05-14,,,,not-an-email,\n"  # 11
        + "won,2024-05-14,10,EUR,,,deal-9\n"  # 12
        + "won,2024-05-14,,,a@example.com\n"  # 13
        + "\n"  # 14: a blank line is not a row
        + "nope,never,,,,a@example.com,\n"  # 15
        + f"won,2024-05-14,,,,a@example.com,{'x' * 201}\n"  # 16
        + "won,2024-05-14,,,,a@example.com,\n",  # 17
    )

    rows = [(line, record, errors) for line, record, errors in parse_outcomes_csv(path)]

    assert [(line, errors) for line, _, errors in rows] == [
        (
            2,
            [{"field": "outcome", "reason": "invalid_outcome: expected won, lost or disqualified"}],
        ),
        (3, [{"field": "outcome", "reason": "missing"}]),
        (4, [{"field": "closed_at", "reason": "invalid_date: expected ISO 8601"}]),
        (5, [{"field": "closed_at", "reason": "missing"}]),
        (6, [{"field": "amount", "reason": "negative_amount"}]),
        (7, [{"field": "amount", "reason": "invalid_amount: not finite"}]),
        (8, [{"field": "amount", "reason": "invalid_amount"}]),
        (9, [{"field": "currency", "reason": "invalid_currency: expected ISO 4217"}]),
        (10, [{"field": "lead_id", "reason": "invalid_uuid"}]),
        (11, [{"field": "email", "reason": "invalid_email"}]),
        (12, [{"field": "lead_id", "reason": "missing: a lead_id or an email is required"}]),
        (13, [{"field": "*", "reason": "ragged_row: 5 cells, the header has 7"}]),
        (
            15,
            [
                {
                    "field": "outcome",
                    "reason": "invalid_outcome: expected won, lost or disqualified",
                },
                {"field": "closed_at", "reason": "invalid_date: expected ISO 8601"},
            ],
        ),
        (16, [{"field": "external_id", "reason": "too_long: over 200"}]),
        (17, []),
    ]
    assert [line for line, record, _ in rows if record is not None] == [17]


def test_undecodable_bytes_and_broken_csv_are_row_errors(tmp_path: Path) -> None:
    good = "won,2024-05-14,,,,a@example.com,\n"
    filler = good * 2000  # past the detection sample, which stays valid UTF-8
    huge = 'won,2024-05-14,,,,a@example.com,"' + "x" * 140_000 + '"\n'  # over csv's field limit
    path = write(
        tmp_path,
        HEADER.encode()
        + filler.encode()
        + b"won,2024-05-14,,,,caf\xe9@example.com,\n"
        + huge.encode()
        + good.encode(),
    )

    rows = list(parse_outcomes_csv(path))

    assert len(rows) == 2003
    assert all(errors == [] for _, _, errors in rows[:2000])
    assert rows[2000] == (2002, None, [{"field": "email", "reason": "bad_encoding"}])
    line, record, errors = rows[2001]
    assert (line, record) == (2003, None)
    assert errors[0]["field"] == "*"
    assert errors[0]["reason"].startswith("csv_error: field larger than field limit")
    assert rows[2002][2] == []
    assert rows[2002][1] is not None


def test_default_ids_are_the_same_for_the_same_file(tmp_path: Path) -> None:
    text = HEADER + "won,2024-05-14,,,,a@example.com,\nlost,2024-05-15,,,,b@example.com,\n"
    first = write(tmp_path, text)
    again = tmp_path / "exported-again.csv"
    shutil.copy(first, again)

    def ids(path: Path) -> list[str]:
        return [record.external_id for _, record, _ in parse_outcomes_csv(path) if record]

    assert ids(first) == ids(first) == ids(again)
    assert ids(first) == [
        default_id(2, "won,2024-05-14,,,,a@example.com,"),
        default_id(3, "lost,2024-05-15,,,,b@example.com,"),
    ]
    # A changed row is another outcome, even on the same line.
    changed = write(tmp_path, text.replace("lost,2024-05-15", "won,2024-05-15"), "changed.csv")
    assert ids(changed)[0] == ids(first)[0]
    assert ids(changed)[1] != ids(first)[1]


@pytest.mark.parametrize(
    ("text", "columns", "message"),
    [
        (
            "Amount,Email\n10,a@example.com\n",
            ("outcome", "closed_at"),
            "missing required columns: outcome, closed_at (found: Amount, Email)",
        ),
        (
            "outcome,closed_at,company\nwon,2024-05-14,Acme\n",
            ("lead_id or email",),
            "missing required columns: lead_id or email (found: outcome, closed_at, company)",
        ),
        (
            "outcome,closed_at,email,E-mail\nwon,2024-05-14,a@example.com,b@example.com\n",
            ("email",),
            "repeated columns: email",
        ),
        ("\n  \n", (), "the file is empty"),
    ],
)
def test_files_without_what_a_record_needs_are_refused(
    tmp_path: Path, text: str, columns: tuple[str, ...], message: str
) -> None:
    path = write(tmp_path, text)

    with pytest.raises(OutcomeCsvRefused) as refused:
        list(parse_outcomes_csv(path))

    assert isinstance(refused.value, ValueError)
    assert str(refused.value) == message
    assert refused.value.columns == columns
