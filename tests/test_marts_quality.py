"""The plausibility rules of the pupil table (quality/marts.py) and the blocking check on it."""

from __future__ import annotations

import duckdb
import pytest

from assets.marts import features_plausible
from quality.marts import check_features, rules
from resources.toda import Warehouse

COLUMNS = ["pupil_id", "as_of_date", "att_d30_days", "att_d30_absent", "att_d30_absent_rate",
           "att_d30_missing", "att_trend_absent_d30", "cns_ytd_sessions", "mood_d30_mood_mean",
           "hlth_obesity_index"]


def table(rows: list[tuple]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA marts")
    con.execute("CREATE TABLE marts.pupil_features (pupil_id VARCHAR, as_of_date DATE, "
                "att_d30_days INTEGER, att_d30_absent INTEGER, att_d30_absent_rate DOUBLE, "
                "att_d30_missing BOOLEAN, att_trend_absent_d30 INTEGER, cns_ytd_sessions INTEGER, "
                "mood_d30_mood_mean DOUBLE, hlth_obesity_index DOUBLE)")
    con.executemany("INSERT INTO marts.pupil_features VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return con


GOOD = ("p1", "2025-11-04", 20, 3, 0.15, False, -2, 1, 3.5, -12.0)


def test_rules_follow_the_column_names():
    by_column = {(r.name, r.column) for r in rules(COLUMNS)}
    assert ("count below zero", "att_d30_absent") in by_column
    assert ("count below zero", "cns_ytd_sessions") in by_column
    assert ("absence rate outside 0–1", "att_d30_absent_rate") in by_column
    assert ("more marks than school days", "att_d30_absent") in by_column
    # a trend, a mean, an index and a missing flag may be negative or are not counts
    ruled = {r.column for r in rules(COLUMNS)}
    assert not ruled & {"att_trend_absent_d30", "mood_d30_mood_mean", "hlth_obesity_index",
                        "att_d30_missing"}


def test_a_plausible_table_passes():
    assert check_features(table([GOOD, GOOD]))["violations"] == []


@pytest.mark.parametrize("row, rule, column", [
    (("p2", "2025-11-04", 20, -1, 0.0, False, 0, 0, 3.0, 0.0), "count below zero", "att_d30_absent"),
    (("p2", "2025-11-04", 20, 3, 1.5, False, 0, 0, 3.0, 0.0), "absence rate outside 0–1", "att_d30_absent_rate"),
    (("p2", "2025-11-04", 20, 21, 1.0, False, 0, 0, 3.0, 0.0), "more marks than school days", "att_d30_absent"),
    (("p2", "2025-11-04", 20, 3, 0.15, False, 0, -4, 3.0, 0.0), "count below zero", "cns_ytd_sessions"),
])
def test_each_rule_finds_its_violation_and_counts_rows(row, rule, column):
    v = check_features(table([GOOD, row, row]))["violations"]
    assert {"rule": rule, "column": column, "rows": 2} in v


def test_the_blocking_check_fails_with_the_rule_in_its_description(tmp_path):
    db = tmp_path / "w.duckdb"
    con = table([GOOD, ("p2", "2025-11-04", 20, -1, 0.0, False, 0, 0, 3.0, 0.0)])
    con.execute(f"ATTACH '{db}' AS w")
    con.execute("CREATE SCHEMA w.marts")
    con.execute("CREATE TABLE w.marts.pupil_features AS SELECT * FROM marts.pupil_features")
    con.close()
    result = features_plausible(warehouse=Warehouse(database=str(db)))
    assert not result.passed
    assert "count below zero in att_d30_absent (1 rows)" in result.description
