"""Plausibility rules for the integrated pupil table, checked in DuckDB over the whole table.

The leakage and hand-computed tests prove the feature SQL on small cities; these rules guard the
real table on every build, before models train on it (a blocking asset check): a count below
zero, an absence rate outside 0–1, or more absences than school days in a window means the
feature SQL or its inputs went wrong. The rules are derived from the column names, so a feature
added later is covered by the rule its name falls under.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WINDOWS = ("d30", "d90", "ytd", "prev")
# event counts in a window: <source>_<window>_<what>, except the non-count suffixes
COUNT = re.compile(rf"^[a-z]+_({'|'.join(WINDOWS)})_[a-z_]+$")
NOT_COUNT = ("_missing", "_rate", "_mean", "_min", "_max", "_share", "_index", "_band", "_level")
# attendance marks bounded by the school days of the same window
BOUNDED_BY_DAYS = ("absent", "absent_sick", "absent_other", "late", "early_leave", "nurse_room",
                   "separate_room", "suspended", "mourning", "reluctant", "monday_absent",
                   "after_break_absent")


@dataclass(frozen=True)
class Rule:
    name: str
    column: str
    violation: str  # SQL condition true for a violating row

    def describe(self) -> str:
        return f"{self.name}: {self.column}"


def rules(columns: list[str]) -> list[Rule]:
    """The rules that apply to a feature table with these columns."""
    present = set(columns)
    out = []
    for c in columns:
        if COUNT.match(c) and not c.endswith(NOT_COUNT):
            out.append(Rule("count below zero", c, f'"{c}" < 0'))
    for w in WINDOWS:
        rate = f"att_{w}_absent_rate"
        if rate in present:
            out.append(Rule("absence rate outside 0–1", rate, f'"{rate}" < 0 OR "{rate}" > 1'))
        days = f"att_{w}_days"
        if days in present:
            for what in BOUNDED_BY_DAYS:
                c = f"att_{w}_{what}"
                if c in present:
                    out.append(Rule("more marks than school days", c, f'"{c}" > "{days}"'))
    return out


def check_features(con, table: str = "marts.pupil_features") -> dict:
    """Rows violating each rule, counted in one scan of the table.

    (That every row belongs to the cohort is not checked here: ``marts.labels`` is a sibling
    asset, possibly not yet rebuilt for the same dates when this runs; the feature SQL starts
    from the cohort, and ``tests/test_features.py`` holds the two tables equal.)"""
    columns = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
    applied = rules(columns)
    counts = con.execute(
        "SELECT count(*)" + "".join(f", count(*) FILTER ({r.violation})" for r in applied)
        + f" FROM {table}").fetchone()
    rows, per_rule = counts[0], counts[1:]
    violations = [{"rule": r.name, "column": r.column, "rows": int(n)}
                  for r, n in zip(applied, per_rule) if n]
    return {"rows": int(rows), "rules": len(applied), "violations": violations}
