"""Reading a CSV file without pydantic on every row, and a chunk at a time in a thread: the
rows, their errors and the progress reported are what `LeadIn` and `read_rows` give."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from leadrelay.capture import csv_import, intake
from leadrelay.capture.schemas import LeadIn

PROPERTY = settings(
    deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow], database=None
)
LIMITS = sorted({info.metadata[-1].max_length for info in LeadIn.model_fields.values()})


def validated_by_pydantic(line: int, record: Sequence[str], layout: csv_import.Layout) -> object:
    """`_row` as it was: every row through `LeadIn.model_validate`."""
    errors: list[dict[str, str]] = []
    if len(record) != len(layout.columns):
        errors.append(
            {
                "field": "*",
                "reason": f"ragged_row: {len(record)} cells, the header has {len(layout.columns)}",
            }
        )
        return csv_import.SourceRow(line, {}, errors)
    values: dict[str, str | None] = {}
    for cell, target in zip(record, layout.fields, strict=True):
        if target is None:
            continue
        try:
            cell.encode("utf-8")
        except UnicodeEncodeError:
            errors.append({"field": target, "reason": "bad_encoding"})
            continue
        values[target] = cell.strip() or None
    if not errors:
        try:
            LeadIn.model_validate({"source": "-", **values})
        except ValidationError as error:
            errors.extend(
                {"field": ".".join(str(p) for p in e["loc"]), "reason": e["type"]}
                for e in error.errors()
            )
    return csv_import.SourceRow(line, values, errors)


# Cells as csv.reader gives them: any text, with lone surrogates where bytes did not decode
# (`surrogateescape`), NUL, blanks, and lengths on either side of every limit of LeadIn.
pieces = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["", " ", "\t", "\x00", "\udcff", "\udc80", "é", "\u00a0", "\u2003", "a"]),
)
cells = st.one_of(
    st.lists(pieces, max_size=4).map("".join),
    st.builds(
        lambda limit, delta, char, pad: pad + char * max(0, limit + delta) + pad,
        st.sampled_from(LIMITS),
        st.integers(-1, 1),
        st.sampled_from(["a", "é", "\x00", " "]),
        st.sampled_from(["", " ", "\n"]),
    ),
)
targets = st.one_of(st.none(), st.sampled_from(intake.INPUT_FIELDS))


@st.composite
def rows(draw: st.DrawFn) -> tuple[csv_import.Layout, list[str]]:
    fields = tuple(draw(st.lists(targets, min_size=1, max_size=8)))
    layout = csv_import.Layout("utf-8", ",", tuple(f"c{n}" for n in range(len(fields))), fields)
    width = len(fields) + draw(st.sampled_from([0, 0, 0, 0, -1, 1]))
    return layout, draw(st.lists(cells, min_size=max(0, width), max_size=max(0, width)))


class TestRowValidation:
    @PROPERTY
    @given(row=rows())
    def test_gives_the_values_and_errors_pydantic_gives(
        self, row: tuple[csv_import.Layout, list[str]]
    ) -> None:
        layout, record = row
        assert csv_import._row(7, record, layout) == validated_by_pydantic(7, record, layout)

    def test_words_every_error_of_a_bad_row_as_pydantic_does_in_its_order(self) -> None:
        layout = csv_import.Layout(
            "utf-8", ",", ("a", "b", "c", "d"), ("phone", "email", "city", "full_name")
        )
        row = csv_import._row(3, ["1" * 51, "x@y.io\x00", "ok", "n" * 301], layout)
        assert row.errors == [
            {"field": "full_name", "reason": "string_too_long"},
            {"field": "email", "reason": "value_error"},
            {"field": "phone", "reason": "string_too_long"},
        ]

    def test_knows_every_limit_of_lead_in(self) -> None:
        """A field LeadIn checks differently (or a new validator) goes through pydantic; today
        every lead field is covered by the check made by hand."""
        assert set(csv_import._TEXT_LIMITS) == set(intake.INPUT_FIELDS)


def write_rows(path: Path, count: int) -> None:
    lines = ["email,name,phone"]
    lines += [f"p{n}@example.com,Person {n},+1 415 555 {n % 10_000:04d}" for n in range(count)]
    lines.insert(5, "")  # a blank line is no row
    lines.insert(9, "too,many,cells,here")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


class TestChunkReader:
    def test_reads_the_rows_and_progress_of_read_rows_a_chunk_at_a_time(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "many.csv"
        write_rows(path, 25_000)  # several progress reports (every 256 KiB)
        layout = csv_import.plan_layout(path, {})
        reported: list[int] = []
        expected = list(csv_import.read_rows(path, layout, progress=reported.append))

        reader = csv_import.ChunkReader(path, layout, size=1000, track_progress=True)
        chunks, progressed = [], []
        while True:
            chunk, made = reader.read()
            progressed += made
            if not chunk:
                break
            chunks.append(chunk)
        assert [len(c) for c in chunks] == [1000] * 25 + [1]
        assert [row for chunk in chunks for row in chunk] == expected
        assert progressed == reported
        assert sum(reported) == path.stat().st_size
        assert reader.read() == ([], [])

    def test_reads_in_one_thread_at_a_time_and_nothing_once_closed(self, tmp_path: Path) -> None:
        path = tmp_path / "many.csv"
        write_rows(path, 5_000)
        layout = csv_import.plan_layout(path, {})
        reader = csv_import.ChunkReader(path, layout, size=4_000, track_progress=False)
        results: list[int] = []
        threads = [
            threading.Thread(target=lambda: results.append(len(reader.read()[0]))) for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # One thread at a time: the file's rows split between them, none twice.
        assert sorted(results) == [0, 1_001, 4_000]
        reader.close()
        assert reader.read() == ([], [])
