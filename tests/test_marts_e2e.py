"""The real Dagster mart assets on the tiny hand-built staging warehouse: everything in one run,
then one month, then one school year rebuilt alone."""

from __future__ import annotations

from datetime import date

import dagster as dg
import duckdb
import pytest

from assets.marts import (AGGREGATES_KEY, FEATURES_KEY, LABELS_KEY, as_of_months, mart_assets,
                          mart_checks, partition_range_tags)
from ml import asof
from resources.toda import build_resources
from tests import tiny_city


@pytest.fixture
def home(paths):
    con = duckdb.connect(str(paths.warehouse))
    tiny_city.build(con)
    con.close()
    return paths


def run(paths, *, partition_key=None, tags=None) -> dg.ExecuteInProcessResult:
    return dg.materialize([*mart_assets, *mart_checks], resources=build_resources(paths),
                          instance=dg.DagsterInstance.ephemeral(), partition_key=partition_key,
                          tags=tags or {}, raise_on_error=True)


def rows(paths, sql):
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def fingerprint(paths, table, where="true"):
    return rows(paths, f"SELECT as_of_date, count(*), sum(hash(COLUMNS(*))) FROM {table} "
                       f"WHERE {where} GROUP BY as_of_date ORDER BY as_of_date")


def test_all_partitions_in_one_run_then_one_month_then_one_school_year(home):
    result = run(home, tags=partition_range_tags())
    assert result.success
    events = result.get_asset_materialization_events()
    months = as_of_months.get_partition_keys()
    assert {e.partition for e in events if e.asset_key == FEATURES_KEY} == set(months)
    assert {e.partition for e in events if e.asset_key == LABELS_KEY} == set(months)
    assert [e.partition for e in events if e.asset_key == AGGREGATES_KEY] == [None]
    assert all(c.passed for c in result.get_asset_check_evaluations())
    con = duckdb.connect(str(home.warehouse), read_only=True)
    expected = [a.date for a in asof.as_of_dates(con)]
    con.close()
    assert [r[0] for r in rows(home, "SELECT DISTINCT as_of_date FROM marts.pupil_features ORDER BY 1")] == expected
    assert [r[0] for r in rows(home, "SELECT DISTINCT as_of_date FROM marts.labels ORDER BY 1")] == expected
    assert rows(home, "SELECT count(*) FROM marts.cohort")[0][0] == rows(home, "SELECT count(*) FROM marts.pupil_features")[0][0]
    assert rows(home, "SELECT count(*) FROM marts.school_aggregates")[0][0] > 0

    # One month: a new absence on 2024-06-28 changes 2024-07-01 and nothing else is touched.
    before = fingerprint(home, "marts.pupil_features")
    con = duckdb.connect(str(home.warehouse))
    con.execute("UPDATE staging.attendance_daily SET status = 'absent_other' "
                "WHERE pupil_id = 'p1' AND date = DATE '2024-06-28'")
    con.close()
    result = run(home, partition_key="2024-07")
    meta = next(e for e in result.get_asset_materialization_events() if e.asset_key == FEATURES_KEY)
    assert meta.partition == "2024-07"
    after = fingerprint(home, "marts.pupil_features")
    changed = [b[0] for b, a in zip(before, after) if b != a]
    assert changed == [date(2024, 7, 1)]
    assert rows(home, "SELECT att_d30_absent_other FROM marts.pupil_features "
                      "WHERE pupil_id = 'p1' AND as_of_date = DATE '2024-07-01'") == [(3,)]

    # One school year (April 2024 - March 2025): its as-of dates are rebuilt, 2023's untouched.
    con = duckdb.connect(str(home.warehouse))
    con.execute("UPDATE staging.mood_checkin SET mood = 4 WHERE pupil_id = 'p1'")
    con.execute("DELETE FROM marts.pupil_features WHERE as_of_date = DATE '2024-12-02'")
    con.close()
    before = fingerprint(home, "marts.pupil_features", "school_year = 2023")
    result = run(home, tags={"dagster/asset_partition_range_start": "2024-04",
                             "dagster/asset_partition_range_end": "2025-03"})
    partitions = {e.partition for e in result.get_asset_materialization_events() if e.asset_key == FEATURES_KEY}
    assert partitions == {f"{y}-{m:02d}" for y, m in [(2024, m) for m in range(4, 13)] + [(2025, m) for m in (1, 2, 3)]}
    assert fingerprint(home, "marts.pupil_features", "school_year = 2023") == before
    assert rows(home, "SELECT count(DISTINCT as_of_date) FROM marts.pupil_features WHERE school_year = 2024")[0][0] == 8
    assert rows(home, "SELECT max(mood_d30_bad_days) FROM marts.pupil_features WHERE school_year = 2024")[0][0] == 0
