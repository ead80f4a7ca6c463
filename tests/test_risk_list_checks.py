"""The checks of a published risk list (quality/risk_list.py) and the metadata formatting
(assets/metadata.py), on small hand-made tables."""

from __future__ import annotations

import datetime as dt
import json
import math

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assets import metadata as MD
from ml.scoring import RISK_SCORES_DDL
from quality import risk_list as R

D = dt.date(2025, 11, 5)


def _con(scores: list[tuple], cohort: list[str]) -> duckdb.DuckDBPyConnection:
    """A warehouse with one list (pupil, score, band) and the cohort of its as-of date; a known
    case k9 is in labels but not in the cohort."""
    con = duckdb.connect()
    con.execute("CREATE SCHEMA marts; CREATE SCHEMA outputs")
    con.execute(RISK_SCORES_DDL.replace("PRIMARY KEY (pupil_id, as_of_date)", "CHECK (true)"))
    con.execute("CREATE TABLE marts.labels (pupil_id VARCHAR, as_of_date DATE, in_cohort BOOLEAN)")
    con.execute("CREATE TABLE marts.pupil_features (pupil_id VARCHAR, as_of_date DATE)")
    for p in cohort + ["k9"]:
        con.execute("INSERT INTO marts.labels VALUES (?, ?, ?)", [p, D, p != "k9"])
        con.execute("INSERT INTO marts.pupil_features VALUES (?, ?)", [p, D])
    for i, (p, score, band) in enumerate(scores):
        con.execute("INSERT INTO outputs.risk_scores (pupil_id, school_code, grade, as_of_date, score, "
                    "band, rank_in_school, model_name, model_version, scored_at) VALUES "
                    "(?, 'S1', 5, ?, ?, ?, ?, 'futoukou_risk', '1', now())", [p, D, score, band, i + 1])
    return con


GOOD = [("p1", 0.8, "赤"), ("p2", 0.5, "ピンク"), ("p3", 0.3, "橙"), ("p4", 0.12, "黄"), ("p5", 0.01, None)]
COHORT = ["p1", "p2", "p3", "p4", "p5"]


def test_a_good_list_passes_every_check():
    con = _con(GOOD, COHORT)
    for name in R.CHECKS:
        r = R.run_check(con, name)
        assert r.passed, (name, r.description)
        assert r.metadata["as_of_date"] == D
    bands = R.run_check(con, "bands_in_severity_order").metadata["bands"]
    assert [b["band"] for b in bands] == ["赤", "ピンク", "橙", "黄", "なし"]  # severity, not alphabet
    assert R.run_check(con, "every_cohort_pupil_scored").description == "all 5 cohort pupils scored"


def test_each_check_fails_on_its_own_fault():
    r = R.run_check(_con([*GOOD[:4], ("p5", 1.2, None)], COHORT), "scores_within_0_1")
    assert not r.passed and r.metadata["outside_0_1"] == 1 and r.metadata["max_score"] == 1.2
    r = R.run_check(_con([("p1", 0.2, "赤"), *GOOD[1:]], COHORT), "bands_in_severity_order")
    assert not r.passed and "赤 (lowest 0.200) below ピンク (highest 0.500)" in r.description
    r = R.run_check(_con([*GOOD[:4], ("p5", 0.01, "紫")], COHORT), "bands_in_severity_order")
    assert not r.passed and r.metadata["unknown_bands"] == ["紫"]
    r = R.run_check(_con([*GOOD, ("p5", 0.02, None)], COHORT), "one_row_per_pupil")
    assert not r.passed and r.metadata["duplicate_rows"] == 1
    # a cohort pupil missing, and a known case scored
    r = R.run_check(_con([*GOOD[:4], ("k9", 0.01, None)], COHORT), "every_cohort_pupil_scored")
    assert not r.passed and (r.metadata["not_scored"], r.metadata["outside_cohort"]) == (1, 1)


def test_no_list_published_passes_and_says_so():
    con = duckdb.connect()
    r = R.run_check(con, "every_cohort_pupil_scored")
    assert r.passed and "no risk list" in r.description


# --- metadata formatting ------------------------------------------------------------------------

def test_numbers_dates_and_order_as_an_engineer_reads_them():
    assert MD.number(0.123456789) == 0.123 and MD.number(0.000123456) == 0.000123
    assert MD.number(float("nan")) is None and MD.number(12345.6789) == 12345.679
    assert MD.date_text(pd.Timestamp("2025-11-05")) == "2025-11-05"
    assert MD.date_text(dt.datetime(2025, 11, 5, 0, 0)) == "2025-11-05"
    assert MD.date_text(pd.Timestamp("2025-11-05 21:03:09")) == "2025-11-05 21:03"
    assert MD.date_text(None) == "" and MD.date_text(pd.NaT) == ""
    cleaned = MD.clean({"b": [np.float64(0.1234567), pd.Timestamp("2025-11-05")], "a": np.int64(3)})
    assert cleaned == {"b": [0.123, "2025-11-05"], "a": 3}
    json.dumps(cleaned)
    frame = pd.DataFrame({"band": ["赤", "ピンク", "橙"], "threshold": [0.61234567, 0.4, None],
                          "as_of_date": pd.to_datetime(["2025-11-05"] * 3)})
    md = MD.md_table(frame).value
    assert "0.612" in md and "0.61234567" not in md and "00:00" not in md
    assert "nan" not in md and "–" in md  # a missing threshold shows as a dash
    assert md.index("赤") < md.index("ピンク") < md.index("橙")  # row order kept


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9))
def test_rounding_keeps_the_value_readable_and_close(x):
    y = MD.number(x)
    assert len(repr(abs(y)).split(".")[-1].split("e")[0]) <= 6 or "e" in repr(y)
    if abs(x) >= 1e-3:
        assert abs(y - x) <= 0.0005 + 1e-12
    else:
        assert x == 0 or math.isclose(y, x, rel_tol=5e-3)
