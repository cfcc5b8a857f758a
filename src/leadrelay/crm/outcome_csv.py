"""Outcomes from a spreadsheet: for CRMs we have no connector for, or none at all.

A sales team exports won/lost/disqualified deals as CSV; this reads the file the way lead
imports do (`leadrelay.capture.csv_import`: streamed, encoding and delimiter detected) and
turns each data row into an `OutcomeRecord` or into row-level errors with its line number.
Every data row is reported, none is dropped. Columns, in any order, any case:

- `outcome`: won, lost or disqualified (required);
- `closed_at`: ISO date or date-time; without an offset it is taken as UTC (required);
- `amount`: a decimal number with a dot, not negative (optional; "1,500" is refused rather
  than guessed at, as the comma is a decimal mark in half the spreadsheets);
- `currency`: ISO 4217 code (optional);
- `lead_id` (our lead's UUID) and/or `email`: at least one column, and a value in each row;
- `external_id`: optional. Without it a row's id is `csv:<line>:<sha256 of the row>[:16]`, so
  importing the same file twice yields the same ids and the second import changes nothing.

Other columns are ignored.
"""

from __future__ import annotations

import csv
import hashlib
import io
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO

import pycountry
from email_validator import EmailNotValidError, validate_email

from leadrelay.capture.csv_import import SAMPLE_BYTES, detect_delimiter, detect_encoding
from leadrelay.crm.outcomes import OutcomeLabel, OutcomeRecord

SOURCE = "csv"
COLUMNS = ("outcome", "closed_at", "amount", "currency", "lead_id", "email", "external_id")
REQUIRED = ("outcome", "closed_at")
LEAD_REFERENCES = ("lead_id", "email")
ALIASES = {"e_mail": "email", "email_address": "email"}
MAX_EXTERNAL_ID = 200

Errors = list[dict[str, str]]


class OutcomeCsvRefused(ValueError):
    """The file cannot be read as outcomes: empty, or without the columns it needs."""

    def __init__(self, message: str, *, columns: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.columns = tuple(columns)  # the missing (or repeated) columns


def _column_name(header: str) -> str:
    name = header.strip().lower().replace(" ", "_").replace("-", "_")
    return ALIASES.get(name, name)


def _layout(header: Sequence[str]) -> dict[str, int]:
    """Known column -> its index; refuses files missing what a record needs."""
    positions: dict[str, int] = {}
    repeated: list[str] = []
    for index, cell in enumerate(header):
        name = _column_name(cell)
        if name not in COLUMNS:
            continue
        if name in positions:
            repeated.append(name)
        positions[name] = index
    if repeated:
        raise OutcomeCsvRefused(
            f"repeated columns: {', '.join(sorted(set(repeated)))}", columns=sorted(set(repeated))
        )
    missing = [name for name in REQUIRED if name not in positions]
    if not any(name in positions for name in LEAD_REFERENCES):
        missing.append("lead_id or email")
    if missing:
        found = ", ".join(h.strip() for h in header) or "none"
        raise OutcomeCsvRefused(
            f"missing required columns: {', '.join(missing)} (found: {found})", columns=missing
        )
    return positions


def parse_closed_at(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _row(
    line: int, cells: Sequence[str], width: int, positions: dict[str, int]
) -> tuple[OutcomeRecord | None, Errors]:
    if len(cells) != width:
        reason = f"ragged_row: {len(cells)} cells, the header has {width}"
        return None, [{"field": "*", "reason": reason}]
    errors: Errors = []
    values: dict[str, str] = {}
    for name, index in positions.items():
        cell = cells[index]
        try:
            cell.encode("utf-8")
        except UnicodeEncodeError:  # undecodable bytes, kept as surrogates by the reader
            errors.append({"field": name, "reason": "bad_encoding"})
            continue
        if cell.strip():
            values[name] = cell.strip()
    if errors:
        return None, errors

    label: OutcomeLabel | None = None
    outcome = values.get("outcome")
    if outcome is None:
        errors.append({"field": "outcome", "reason": "missing"})
    else:
        try:
            label = OutcomeLabel(outcome.lower())
        except ValueError:
            errors.append(
                {
                    "field": "outcome",
                    "reason": "invalid_outcome: expected won, lost or disqualified",
                }
            )

    closed_at: datetime | None = None
    closed_text = values.get("closed_at")
    if closed_text is None:
        errors.append({"field": "closed_at", "reason": "missing"})
    else:
        closed_at = parse_closed_at(closed_text)
        if closed_at is None:
            errors.append({"field": "closed_at", "reason": "invalid_date: expected ISO 8601"})

    amount: Decimal | None = None
    if "amount" in values:
        try:
            amount = Decimal(values["amount"])
        except InvalidOperation:
            errors.append({"field": "amount", "reason": "invalid_amount"})
        else:
            if not amount.is_finite():
                errors.append({"field": "amount", "reason": "invalid_amount: not finite"})
                amount = None
            elif amount < 0:
                errors.append({"field": "amount", "reason": "negative_amount"})
                amount = None

    currency: str | None = None
    if "currency" in values:
        code = values["currency"].upper()
        if len(code) == 3 and pycountry.currencies.get(alpha_3=code) is not None:
            currency = code
        else:
            errors.append({"field": "currency", "reason": "invalid_currency: expected ISO 4217"})

    lead_id: uuid.UUID | None = None
    if "lead_id" in values:
        try:
            lead_id = uuid.UUID(values["lead_id"])
        except ValueError:
            errors.append({"field": "lead_id", "reason": "invalid_uuid"})

    emails: tuple[str, ...] = ()
    if "email" in values:
        try:
            checked = validate_email(values["email"], check_deliverability=False)
        except EmailNotValidError:
            errors.append({"field": "email", "reason": "invalid_email"})
        else:
            emails = (checked.normalized.lower(),)

    if not any(name in values for name in LEAD_REFERENCES):
        errors.append({"field": "lead_id", "reason": "missing: a lead_id or an email is required"})

    external_id = values.get("external_id")
    if external_id is not None and len(external_id) > MAX_EXTERNAL_ID:
        errors.append({"field": "external_id", "reason": f"too_long: over {MAX_EXTERNAL_ID}"})
    if errors or label is None or closed_at is None:
        return None, errors
    if external_id is None:
        digest = hashlib.sha256(
            "\x1f".join(cells).encode("utf-8", errors="surrogateescape")
        ).hexdigest()[:16]
        external_id = f"csv:{line}:{digest}"
    record = OutcomeRecord(
        source=SOURCE,
        external_id=external_id,
        label=label,
        closed_at=closed_at,
        amount=amount,
        currency=currency,
        emails=emails,
        lead_id=lead_id,
    )
    return record, []


def parse_outcomes_csv(
    path: Path,
) -> Iterator[tuple[int, OutcomeRecord | None, list[dict[str, str]]]]:
    """(line number, record or None, errors) for every data row, in file order. Blank lines
    are not rows. Raises `OutcomeCsvRefused` (before the first row) when the file is empty or
    lacks a required column (on the first `next`, before any row)."""
    with path.open("rb") as handle:
        sample = handle.read(SAMPLE_BYTES)
    if not sample.strip():
        raise OutcomeCsvRefused("the file is empty")
    encoding = detect_encoding(sample)
    delimiter = detect_delimiter(sample.decode(encoding, errors="replace")[: SAMPLE_BYTES // 2])
    raw = path.open("rb")
    text: IO[str] = io.TextIOWrapper(raw, encoding=encoding, errors="surrogateescape", newline="")
    try:
        reader = csv.reader(text, delimiter=delimiter)
        header = next(reader, [])
        positions = _layout(header)
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as error:
                yield reader.line_num, None, [{"field": "*", "reason": f"csv_error: {error}"}]
                continue
            if not any(cell.strip() for cell in cells):
                continue
            record, errors = _row(reader.line_num, cells, len(header), positions)
            yield reader.line_num, record, errors
    finally:
        text.close()
