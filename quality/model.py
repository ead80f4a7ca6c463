"""What a quality check reports: plain data, no Great Expectations and no Dagster imports.

A :class:`Failure` is one broken rule in one file (or one staging table): which rule, how bad
(``error`` blocks, ``warn`` is recorded), where (line numbers in the *original* file, the
column and its Japanese header as it appeared) and a few offending values. Values are staged
values only: pupil and resident ids are already pseudonyms and names never reach a frame.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import pandas as pd

ERROR = "error"
WARN = "warn"
MAX_LINES = 10  # line numbers kept on a Failure
MAX_SAMPLES = 5  # offending values kept on a Failure
LINES_IN_MESSAGE = 5


@dataclass
class Failure:
    check: str  # our name for the rule: "range", "unique_key", "known_pupil", …
    expectation: str  # the GX expectation type behind it, or "custom"
    severity: str  # "error" (the file is quarantined) or "warn" (recorded, applied)
    column: str | None  # staged column name(s); several key columns are joined with ", "
    unexpected_count: int  # offending rows (for a table-level check: the file's row count)
    lines: list[int]  # up to 10 line numbers in the original file (from ``_line``)
    sample_values: list  # up to 5 offending staged values (JSON-serialisable)
    message: str  # plain English naming file, lines, column and header

    @property
    def blocking(self) -> bool:
        return self.severity == ERROR

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FileContext:
    file_name: str
    headers: dict[str, str] = field(default_factory=dict)  # canonical name -> header as in the file
    exported_on: dt.date | None = None  # the file's export (modification) date
    known_pupils: dict[int, set[str]] | None = None  # school_year -> pupil_ids of the registry
    known_residents: set[str] | None = None  # resident_ids of the registry (any year)
    known_schools: set[str] | None = None  # school codes of the school master
    previous_volumes: list[int] = field(default_factory=list)  # rows of earlier files, oldest first


class _Outcome:
    """What a file's and a table's validation share: failures split by severity, the verdict."""

    source_key: str
    rows: int
    failures: list[Failure]
    seconds: float
    validated_at: dt.datetime
    skipped: list[str]

    @property
    def errors(self) -> list[Failure]:
        return [f for f in self.failures if f.severity == ERROR]

    @property
    def warnings(self) -> list[Failure]:
        return [f for f in self.failures if f.severity == WARN]

    @property
    def passed(self) -> bool:
        """True when nothing blocks (warnings allowed)."""
        return not self.errors

    def _outcome_dict(self, **specific) -> dict:
        return {"source_key": self.source_key, **specific, "rows": self.rows,
                "passed": self.passed, "errors": len(self.errors), "warnings": len(self.warnings),
                "seconds": round(self.seconds, 4),
                "validated_at": self.validated_at.isoformat(timespec="seconds"),
                "skipped": list(self.skipped), "failures": [f.to_dict() for f in self.failures]}


@dataclass
class FileValidation(_Outcome):
    """Everything one file's validation produced: the failures and the GX result behind them."""

    source_key: str
    file_name: str
    rows: int
    failures: list[Failure]
    seconds: float
    validated_at: dt.datetime
    expectations: int = 0  # expectations evaluated by GX
    skipped: list[str] = field(default_factory=list)  # checks that could not run, and why
    gx_result: object | None = None  # great_expectations ExpectationSuiteValidationResult
    docs_page: str | None = None  # set by render_data_docs: this file's page
    timings: dict[str, float] = field(default_factory=dict)  # seconds: prepare, gate, details

    def to_dict(self) -> dict:
        return self._outcome_dict(file_name=self.file_name, expectations=self.expectations,
                                  timings={k: round(v, 4) for k, v in self.timings.items()})


@dataclass
class TableValidation(_Outcome):
    """Whole-table checks on ``staging.<source_key>`` (run as a blocking Dagster asset check)."""

    source_key: str
    rows: int
    failures: list[Failure]
    seconds: float
    validated_at: dt.datetime
    checks: list[str] = field(default_factory=list)  # the checks that ran
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return self._outcome_dict(checks=list(self.checks))


# ---------------------------------------------------------------------------------------------
# Wording shared by file and table checks
# ---------------------------------------------------------------------------------------------

def plain(value):
    """A staged value as a JSON-serialisable Python value (dates as ISO strings)."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if value is pd.NaT:  # a blank date (NaT is a datetime without a time)
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time(0) else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)):
        return value
    try:  # pandas Timestamp / NaT
        if value is pd.NaT:
            return None
        if isinstance(value, pd.Timestamp):
            return plain(value.to_pydatetime())
    except ImportError:  # pragma: no cover
        pass
    return str(value)


def show(value) -> str:
    """A value as it appears in a message: strings quoted, numbers and dates bare."""
    value = plain(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={show(v)}" for k, v in value.items())
    if isinstance(value, str) and not _looks_like_date(value):
        return f"'{value}'"
    return str(value)


def _looks_like_date(text: str) -> bool:
    return len(text) == 10 and text[4] == "-" and text[7] == "-" and text[:4].isdigit()


def count(n: int, singular: str, plural: str | None = None) -> str:
    return f"{n:,} {singular if n == 1 else (plural or singular + 's')}"


def where(file_name: str, lines: Sequence[int], columns: Sequence[str], headers: Sequence[str | None],
          total: int | None = None) -> str:
    """'出欠_2024-05.csv, lines 14, 27, column date (header '日付')'.

    ``total`` is how many rows are affected; when it exceeds the lines shown, says how many more.
    """
    parts = [file_name]
    if lines:
        shown = list(lines[:LINES_IN_MESSAGE])
        text = f"line{'s' if len(lines) > 1 or (total or 0) > 1 else ''} {', '.join(str(n) for n in shown)}"
        more = max((total or len(lines)) - len(shown), 0)
        if more:
            text += f" (and {more:,} more)"
        parts.append(text)
    if columns:
        if len(columns) == 1:
            h = headers[0] if headers else None
            parts.append(f"column {columns[0]}" + (f" (header '{h}')" if h else ""))
        else:
            hs = ", ".join(f"'{h}'" for h in headers if h)
            parts.append(f"columns {', '.join(columns)}" + (f" (headers {hs})" if hs else ""))
    return ", ".join(parts)


def examples(values: Iterable) -> str:
    shown = [show(v) for v in values]
    return f", e.g. {'; '.join(shown)}" if shown else ""
