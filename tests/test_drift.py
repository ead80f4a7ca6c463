"""The drift gate's pure logic (quality/drift.py): which features count as drifted, the
reference date, acceptances, and the warehouse record the blocking check reads."""

from __future__ import annotations

from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quality import drift

REF, CUR = date(2025, 11, 4), date(2026, 11, 6)


def frames(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def one():
        return pd.DataFrame({
            "absent": rng.poisson(3, n).astype(float),
            "mood": rng.normal(3.5, 0.6, n),
            "qu_group": rng.integers(1, 5, n).astype(float),
            "flag": (rng.random(n) < 0.1).astype(float),
            "constant": np.ones(n),
        })
    return one(), one()


def run(ref, cur, **kw) -> drift.DriftResult:
    return drift.feature_drift(ref, cur, list(ref.columns), reference_date=REF, current_date=CUR, **kw)


@pytest.mark.parametrize("n", [400, 4000])  # Evidently tests below 1,000 rows, measures above
def test_two_samples_of_one_city_do_not_drift(n):
    ref, cur = frames(n)
    r = run(ref, cur)
    # a test at the 5% level may flag one of the small samples' features by chance; the
    # distance used from 1,000 rows on should flag none
    assert r.passed and len(r.drifted) <= (1 if n < 1000 else 0)
    assert set(r.columns.method.dropna()) >= {"constant in reference"}


@pytest.mark.parametrize("n", [400, 4000])
def test_a_moved_distribution_and_a_vanished_source_are_drift(n):
    ref, cur = frames(n)
    cur["absent"] = cur.absent * 3  # a code list changed: lates counted as absences
    cur["mood"] = np.nan  # the mood survey stopped arriving: Evidently alone would not see it
    r = run(ref, cur)
    chance = 1 if n < 1000 else 0  # as above: a 5%-level test may add one by chance
    assert {"absent", "mood"} <= set(r.drifted) and len(r.drifted) <= 2 + chance
    assert not r.passed and "beyond" in r.summary()
    reasons = r.columns.set_index("column").reason
    assert reasons["absent"] == "distribution moved"
    assert reasons["mood"] == f"no values on {CUR}; missing 0% → 100%"


def test_a_jump_in_missing_values_alone_is_drift_but_a_small_one_is_not():
    ref, cur = frames(4000)
    cur.loc[: int(0.25 * len(cur)), "mood"] = np.nan
    cur.loc[: int(0.1 * len(cur)), "qu_group"] = np.nan
    r = run(ref, cur, null_jump=0.2)
    assert r.drifted == ["mood"]
    row = r.columns.set_index("column").loc["mood"]
    assert row.null_share_current == pytest.approx(0.25, abs=0.01) and row.null_share_reference == 0


def test_a_constant_feature_that_starts_to_vary_is_drift():
    ref, cur = frames(1000)
    cur["constant"] = np.arange(len(cur)) % 3
    assert run(ref, cur).drifted == ["constant"]


def test_accepted_features_are_reported_but_do_not_count():
    ref, cur = frames(2000)
    cur["absent"] = cur.absent + 5
    r = run(ref, cur, accepted={"absent"})
    row = r.columns.set_index("column").loc["absent"]
    assert row.drifted and row.accepted
    assert r.drifted == [] and r.passed


def test_the_limit_is_a_share_of_the_features_compared():
    ref, cur = frames(2000)
    cur["absent"] = cur.absent + 5  # one of five features: 20%
    assert run(ref, cur, drift_share_limit=0.2).passed
    assert not run(ref, cur, drift_share_limit=0.19).passed


def test_no_rows_on_a_date_is_an_error_that_names_it():
    ref, cur = frames(100)
    with pytest.raises(ValueError, match=f"0 on {CUR}"):
        run(ref, cur.iloc[:0])


def test_the_html_report_is_written(tmp_path):
    ref, cur = frames(500)
    r = run(ref, cur, html_path=tmp_path / "drift" / "r.html")
    html = r.report_path.read_text(encoding="utf-8")
    assert html.lstrip().startswith("<!DOCTYPE html>") and "qu_group" in html and len(html) > 10_000


@settings(max_examples=10, deadline=None)
@given(n=st.integers(30, 600), seed=st.integers(0, 10_000), scale=st.floats(0.1, 100))
def test_a_frame_never_drifts_from_itself(n, seed, scale):
    ref, _ = frames(n, seed)
    ref = ref * scale
    r = run(ref, ref.copy())
    assert r.drifted == [] and r.passed


@pytest.mark.parametrize("current, expected", [
    (date(2026, 11, 6), date(2025, 11, 4)),   # early November: last year's November date
    (date(2026, 11, 26), date(2025, 12, 1)),  # late November: nearer to last year's December
    (date(2026, 7, 20), None),                # nothing within 45 days of a year before
    (date(2028, 2, 29), date(2027, 3, 1)),    # a leap day
])
def test_the_reference_is_the_nearest_as_of_date_a_year_earlier(current, expected):
    dates = [date(2025, 5, 1), date(2025, 10, 1), date(2025, 11, 4), date(2025, 12, 1),
             date(2026, 3, 2), date(2027, 2, 1), date(2027, 3, 1), date(2026, 11, 6)]
    assert drift.reference_date(dates, current) == expected


class FakeBooster:
    def feature_name(self):
        return ["a", "b", "c", "d"]

    def feature_importance(self, importance_type):
        assert importance_type == "gain"
        return np.array([5.0, 0.0, 9.0, 5.0])


def test_top_features_by_gain_leave_out_unused_ones():
    assert list(drift.top_features(FakeBooster(), 3).items()) == [("c", 9.0), ("a", 5.0), ("d", 5.0)]
    assert list(drift.top_features(FakeBooster(), 10)) == ["c", "a", "d"]


def test_the_share_is_of_importance_when_weights_are_given():
    ref, cur = frames(2000)
    cur["absent"] = cur.absent + 5  # one of five features drifts
    gains = {"absent": 8.0, "mood": 1.0, "qu_group": 0.5, "flag": 0.5, "constant": 0.0}
    r = run(ref, cur, weights=gains)
    assert r.drifted == ["absent"] and r.share == pytest.approx(0.8)
    assert not r.passed and "carrying 80% of their importance" in r.summary()
    assert r.columns.weight.sum() == pytest.approx(1.0)
    # the same drift in a minor feature passes
    cur2 = frames(2000)[1]
    cur2["flag"] = 1 - cur2.flag
    minor = run(ref, cur2, weights=gains)
    assert minor.drifted == ["flag"] and minor.share == pytest.approx(0.05) and minor.passed


def test_the_record_the_check_reads_and_acceptances_by_school_year():
    con = duckdb.connect()
    drift.ensure_tables(con)
    assert drift.latest_run(con) is None
    drift.accept(con, ["absent"], "attendance export changed its codes", run_id="r0", on=CUR)
    with pytest.raises(ValueError, match="reason"):
        drift.accept(con, ["mood"], "  ", run_id="r0", on=CUR)
    assert drift.accepted_features(con, CUR) == {"absent"}
    assert drift.accepted_features(con, date(2027, 4, 1)) == set()  # a new school year
    ref, cur = frames(2000)
    cur["absent"] = cur.absent + 5
    cur["mood"] = cur.mood + 2
    r = run(ref, cur, accepted=drift.accepted_features(con, CUR), drift_share_limit=0.1)
    assert r.share == pytest.approx(0.2)  # equal weights: mood is one of five
    drift.record_run(con, r, run_id="r1", as_of_date=CUR, status="measured", model_version="3")
    drift.record_run(con, None, run_id="r2", as_of_date=CUR, status="no champion", model_version=None)
    mine = drift.latest_run(con, "r1")
    assert mine["run_id"] == "r1" and not mine["passed"] and list(mine["drifted_features"]) == ["mood"]
    assert drift.latest_run(con)["run_id"] == "r2" and drift.latest_run(con)["passed"]
    per_feature = con.execute("SELECT \"column\", drifted, accepted FROM quality.feature_drift "
                              "WHERE run_id = 'r1' ORDER BY 1").fetchall()
    assert ("absent", True, True) in per_feature and ("mood", True, False) in per_feature


def test_publication_needs_a_passed_measurement_of_that_date_and_model():
    ok = {"as_of_date": pd.Timestamp(CUR), "status": "measured", "model_version": "3", "passed": True,
          "summary": "0 of 30"}
    assert drift.publication_refused(ok, CUR, "3") is None
    assert "materialise scoring/feature_drift first" in drift.publication_refused(None, CUR, "3")
    assert "not 2026-11-07" in drift.publication_refused(ok, date(2026, 11, 7), "3")
    assert "version 3, the champion is now 4" in drift.publication_refused(ok, CUR, "4")
    failed = {**ok, "passed": False, "summary": "12 of 30 drifted"}
    assert drift.publication_refused(failed, CUR, "3") == "the drift gate failed: 12 of 30 drifted"
    # without a measurement for a reason that lets a list out (no reference date yet), it passes
    unmeasured = {**ok, "status": "no as-of date near one year before", "model_version": "3"}
    assert drift.publication_refused(unmeasured, CUR, "3") is None


def test_small_samples_are_tested_at_a_corrected_level_and_large_ones_measured():
    small = drift._methods(999, 30)
    assert small["num_method"] == "ks" and small["num_threshold"] == pytest.approx(0.05 / 30)
    large = drift._methods(1000, 30)
    assert large["num_method"] == "wasserstein" and large["num_threshold"] == 0.1
    ref, cur = frames(400)
    r = run(ref, cur)
    assert set(r.columns.method.dropna()) == {"ks", "constant in reference"}
    # divided by the features Evidently scores (the constant one is judged apart)
    assert np.allclose(r.columns.threshold.dropna(), 0.05 / 4)
