"""Metrics of a risk list, against values worked out by hand, and their invariants."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml import metrics as M


# --- precision@k / recall@k by hand ------------------------------------------------------------

def test_precision_and_recall_at_k_by_hand():
    y = [1, 0, 1, 0, 0, 1, 0, 0, 0, 0]
    s = [.9, .8, .7, .6, .5, .4, .3, .2, .1, .0]
    assert M.precision_at_k(y, s, 1) == 1.0
    assert M.precision_at_k(y, s, 2) == 0.5
    assert M.precision_at_k(y, s, 3) == pytest.approx(2 / 3)
    assert M.recall_at_k(y, s, 3) == pytest.approx(2 / 3)
    assert M.recall_at_k(y, s, 6) == 1.0
    assert M.precision_at_k(y, s, 10) == pytest.approx(0.3)


def test_ties_are_broken_at_random_and_reported_as_the_expectation():
    # top 2 of: 0.9 (pos), then three tied at 0.5 (one pos) -> 1 + 1 * (1/3) expected positives
    y = [1, 1, 0, 0, 0]
    s = [.9, .5, .5, .5, .1]
    assert M.precision_at_k(y, s, 2) == pytest.approx((1 + 1 / 3) / 2)
    assert M.recall_at_k(y, s, 2) == pytest.approx((1 + 1 / 3) / 2)
    np.testing.assert_allclose(M.topk_inclusion(s, 2), [1, 1 / 3, 1 / 3, 1 / 3, 0])
    # the expectation equals the mean over many random tie-breaks
    rng = np.random.default_rng(1)
    draws = []
    for _ in range(4000):
        order = np.lexsort((rng.random(5), -np.array(s)))
        draws.append(np.array(y)[order[:2]].mean())
    assert np.mean(draws) == pytest.approx(M.precision_at_k(y, s, 2), abs=0.01)


def test_top_fraction_uses_ceil_of_the_cohort():
    assert M.k_for_fraction(100, 0.05) == 5
    assert M.k_for_fraction(101, 0.05) == 6
    assert M.k_for_fraction(10, 0.05) == 1
    assert M.k_for_fraction(0, 0.05) == 0
    y = np.r_[np.ones(3), np.zeros(97)]
    s = np.r_[[3, 2, 1], np.zeros(97)] + 0.5
    s[3:] = np.linspace(0, 0.4, 97)
    r = M.at_fraction(y, s, 0.05)
    assert r == {"k": 5, "precision": pytest.approx(3 / 5), "recall": 1.0}


def test_top_three_per_school_by_hand():
    # school A: 4 pupils, positives ranked 1st and 4th; school B: 2 pupils, one positive ranked 2nd
    y = [1, 0, 0, 1, 0, 1]
    s = [.9, .8, .7, .6, .5, .4]
    g = ["A", "A", "A", "A", "B", "B"]
    r = M.per_group_at_k(y, s, g, 3)
    # listed: A's top 3 (1 positive) + both of B (1 positive) = 5 listed, 2 positives
    assert r["k"] == 5
    assert r["precision"] == pytest.approx(2 / 5)
    assert r["recall"] == pytest.approx(2 / 3)


def test_auc_brier_and_calibration_by_hand():
    y = [0, 0, 1, 1]
    assert M.roc_auc(y, [.1, .4, .35, .8]) == pytest.approx(0.75)
    assert M.roc_auc(y, [.5, .5, .5, .5]) == pytest.approx(0.5)
    assert math.isnan(M.roc_auc([0, 0], [.1, .2]))
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    yy, ss = rng.integers(0, 2, 300), rng.integers(0, 7, 300)  # many ties
    assert M.roc_auc(yy, ss) == pytest.approx(roc_auc_score(yy, ss))
    # AP: ranks 0.8 (pos) p=1, 0.4 (neg), 0.35 (pos) p=2/3 -> (1 + 2/3) / 2
    assert M.pr_auc(y, [.1, .4, .35, .8]) == pytest.approx((1 + 2 / 3) / 2)
    assert M.brier([0, 1], [0.2, 0.6]) == pytest.approx((0.04 + 0.16) / 2)
    # two bins: {0.1, 0.1 | 0.9, 0.9}, observed 0.5 and 1.0 -> ECE = (0.4 + 0.1) / 2
    t = M.calibration_table([0, 1, 1, 1], [.1, .1, .9, .9], n_bins=2)
    assert list(t.n) == [2, 2]
    np.testing.assert_allclose(t.observed_rate, [0.5, 1.0])
    assert M.expected_calibration_error([0, 1, 1, 1], [.1, .1, .9, .9], 2) == pytest.approx(0.25)


def test_tied_probabilities_stay_in_one_calibration_bin():
    p = [0.1] * 7 + [0.5] * 3
    t = M.calibration_table([0] * 10, p, n_bins=5)
    assert list(t.n) == [7, 3]


def test_r_precision_recall_in_short_lists_and_pr_auc_by_hand():
    # 3 positives ranked 1st, 3rd and 6th of 10: the top 3 hold two of them
    y = [1, 0, 1, 0, 0, 1, 0, 0, 0, 0]
    s = [.9, .8, .7, .6, .5, .4, .3, .2, .1, .0]
    assert M.r_precision(y, s) == pytest.approx(2 / 3)
    # average precision: mean of precision at each positive = (1 + 2/3 + 3/6) / 3
    assert M.pr_auc(y, s) == pytest.approx((1 + 2 / 3 + 1 / 2) / 3)
    # 200 pupils: top 1 % = 2, top 2 % = 4; positives at ranks 1, 3, 5 and 50
    y = np.zeros(200)
    y[[0, 2, 4, 49]] = 1
    s = -np.arange(200.0)
    assert M.recall_at_fraction(y, s, 0.01) == pytest.approx(1 / 4)
    assert M.recall_at_fraction(y, s, 0.02) == pytest.approx(2 / 4)
    m = M.ranking_metrics(y, s)
    assert (m["recall_top1"], m["recall_top2"]) == (pytest.approx(0.25), pytest.approx(0.5))
    assert m["r_precision"] == pytest.approx(2 / 4)  # top 4 = ranks 1-4: holds ranks 1 and 3
    # a tie across the k-th place counts in expectation: 1 positive among 2 tied for 1 place
    assert M.r_precision([1, 0, 0], [1, 1, 0]) == pytest.approx(0.5)
    assert math.isnan(M.r_precision([0, 0], [1, 2]))
    assert math.isnan(M.recall_at_fraction([0, 0], [1, 2], 0.5))


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 60).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, 1), min_size=n, max_size=n),
    st.lists(st.integers(0, 5), min_size=n, max_size=n))))
def test_r_precision_equals_recall_at_the_number_of_cases(data):
    y, s = map(np.asarray, data)
    pos = int(y.sum())
    r = M.r_precision(y, s)
    if pos == 0:
        assert math.isnan(r)
        return
    assert 0 <= r <= 1 and r == pytest.approx(M.recall_at_k(y, s, pos))
    assert M.r_precision(y, y) == pytest.approx(1.0)  # a perfect ranking
    assert M.r_precision(y, np.zeros(len(y))) == pytest.approx(y.mean())  # constant: base rate
    # recall grows with the list: top 1 % <= top 2 % <= top 5 %
    r1, r2 = M.recall_at_fraction(y, s, 0.01), M.recall_at_fraction(y, s, 0.02)
    assert r1 <= r2 + 1e-12 <= M.at_fraction(y, s, 0.05)["recall"] + 2e-12


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError):
        M.precision_at_k([0, 1], [0.1, float("nan")], 1)
    with pytest.raises(ValueError):
        M.precision_at_k([0, 2], [0.1, 0.2], 1)


# --- invariants --------------------------------------------------------------------------------

labelled_scores = st.integers(1, 60).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, 1), min_size=n, max_size=n),
    st.lists(st.integers(0, 5), min_size=n, max_size=n),  # small range: many ties
))


@settings(max_examples=150, deadline=None)
@given(labelled_scores, st.integers(1, 70))
def test_precision_recall_invariants(data, k):
    y, s = map(np.asarray, data)
    n, pos = len(y), y.sum()
    kk = min(k, n)
    p = M.precision_at_k(y, s, k)
    assert 0 <= p <= 1
    # k · precision = positives listed = recall · all positives
    if pos:
        r = M.recall_at_k(y, s, k)
        assert 0 <= r <= 1
        assert kk * p == pytest.approx(r * pos)
        # recall never falls as the list grows, and the whole cohort finds everyone
        assert M.recall_at_k(y, s, kk + 1) >= r - 1e-12
        assert M.recall_at_k(y, s, n) == pytest.approx(1.0)
    # listing everyone gives the base rate
    assert M.precision_at_k(y, s, n) == pytest.approx(y.mean())
    # a strictly increasing transformation of the scores changes nothing
    assert M.precision_at_k(y, np.exp(s) * 3 - 7, k) == pytest.approx(p)
    # constant scores: every pupil equally likely to be listed -> the base rate
    assert M.precision_at_k(y, np.zeros(n), k) == pytest.approx(y.mean())
    # scores equal to the labels: as good as possible
    assert M.precision_at_k(y, y, k) == pytest.approx(min(kk, pos) / kk)
    # inclusion probabilities sum to k
    assert M.topk_inclusion(s, k).sum() == pytest.approx(kk)


@settings(max_examples=60, deadline=None)
@given(labelled_scores, st.integers(1, 4))
def test_per_school_lists_are_each_schools_top_k(data, k):
    y, s = map(np.asarray, data)
    groups = np.arange(len(y)) % 3
    r = M.per_group_at_k(y, s, groups, k)
    assert r["k"] == pytest.approx(sum(min(k, (groups == g).sum()) for g in range(3)))
    # one school at a time gives the same positives listed
    tp = sum(M.precision_at_k(y[groups == g], s[groups == g], k) * min(k, (groups == g).sum())
             for g in range(3) if (groups == g).any())
    assert r["precision"] * r["k"] == pytest.approx(tp)


# --- lead time ---------------------------------------------------------------------------------

def _calendar(start: date, days: int) -> list[date]:
    out, d = [], start
    while len(out) < days:
        if d.weekday() < 5:
            out.append(d)
        d += timedelta(days=1)
    return out


def test_school_days_between_counts_the_calendar_only():
    cal = _calendar(date(2025, 9, 1), 30)  # Mon 1 Sep 2025 onwards, weekdays
    assert M.school_days_between(cal, [date(2025, 9, 1)], [date(2025, 9, 8)])[0] == 5
    assert M.school_days_between(cal, [date(2025, 9, 6)], [date(2025, 9, 9)])[0] == 1  # Mon only
    assert M.school_days_between(cal, [date(2025, 9, 9)], [date(2025, 9, 9)])[0] == 0


def test_lead_time_by_hand():
    cal = _calendar(date(2025, 9, 1), 80)
    d1, d2, d3 = date(2025, 9, 1), date(2025, 10, 1), date(2025, 11, 4)
    thirtieth = date(2025, 11, 11)
    # 20 pupils per date -> top 5% = 1 pupil. Pupil P is listed in October (first time) and
    # November; Q (also positive) is never listed before its 30th absence; R is a negative.
    rows = []
    for d, top in ((d1, "R"), (d2, "P"), (d3, "P")):
        for i in range(17):
            rows.append((f"x{i}", d, 0.01 * i / 20, 0, None))
        rows += [("P", d, 0.9 if top == "P" else 0.5, 1, thirtieth),
                 ("Q", d, 0.3, 1, date(2025, 10, 20)),
                 ("R", d, 0.95 if top == "R" else 0.2, 0, None)]
    f = pd.DataFrame(rows, columns=["pupil_id", "as_of_date", "score", "label", "date_30th"])
    out, detail = M.lead_times(f, cal, fraction=0.05, n_draws=5, return_pupils=True)
    lead_p = M.school_days_between(cal, [d2], [thirtieth])[0]  # Oct 1 .. Nov 10
    assert lead_p == 29  # 23 weekdays in October 2025 + 6 in November (3rd to 10th)
    assert out["pupils"] == 2
    assert out["mean"] == pytest.approx(lead_p / 2)
    assert out["median"] == pytest.approx(lead_p / 2)  # median of {29, 0}
    assert out["median_listed"] == pytest.approx(lead_p)
    assert out["share_listed"] == pytest.approx(0.5)
    assert dict(zip(detail.pupil_id, detail.mean_lead_days)) == {"P": lead_p, "Q": 0}


def test_lead_time_with_ties_is_the_mean_over_draws():
    cal = _calendar(date(2025, 9, 1), 60)
    d1 = date(2025, 9, 1)
    thirtieth = date(2025, 10, 1)
    # 20 pupils tied at the top -> top 5% = 1 of them at random; one positive among them
    f = pd.DataFrame({"pupil_id": [f"p{i}" for i in range(20)], "as_of_date": d1, "score": 0.5,
                      "label": [1] + [0] * 19, "date_30th": [thirtieth] + [None] * 19})
    out = M.lead_times(f, cal, n_draws=400, seed=3)
    full = M.school_days_between(cal, [d1], [thirtieth])[0]
    assert out["share_listed"] == pytest.approx(1 / 20, abs=0.03)
    assert out["mean"] == pytest.approx(full / 20, abs=full * 0.03)


def _lead_times_by_full_sort(f: pd.DataFrame, calendar, fraction: float, n_draws: int, seed: int) -> dict:
    """The definition, done the slow way: every draw ranks every row of a date by score, then by
    a random number (the same stream as ``lead_times``), and each case's first listing counts."""
    f = f.sort_values(["as_of_date", "pupil_id"], kind="stable").reset_index(drop=True)
    f["as_of_date"], f["date_30th"] = pd.to_datetime(f["as_of_date"]), pd.to_datetime(f["date_30th"])
    cases = f[(f.label == 1) & f.date_30th.notna()].drop_duplicates("pupil_id").set_index("pupil_id").date_30th
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_draws):
        g = f.assign(u=rng.random(len(f))).sort_values(["as_of_date", "score", "u"],
                                                       ascending=[True, False, True], kind="stable")
        g["rank"] = g.groupby("as_of_date").cumcount()
        g["k"] = g.groupby("as_of_date").score.transform(lambda s: M.k_for_fraction(len(s), fraction))
        lead = {}
        for r in g[(g["rank"] < g.k) & (g.label == 1) & g.date_30th.notna()
                   & (g.as_of_date <= g.date_30th)].itertuples():
            days = int(M.school_days_between(calendar, [r.as_of_date], [r.date_30th])[0])
            lead[r.pupil_id] = max(lead.get(r.pupil_id, -1), days)
        got = np.array([p in lead for p in cases.index])
        lead0 = np.array([lead.get(p, 0) for p in cases.index], dtype=float)
        stats.append({"median": np.median(lead0), "mean": lead0.mean(),
                      "median_listed": np.median(lead0[got]) if got.any() else float("nan"),
                      "share_listed": got.mean()})
    s = pd.DataFrame(stats)
    return {"pupils": len(cases), **{c: float(s[c].mean()) for c in s.columns}}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the slow way's means over no cases
@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(5, 60), st.sampled_from([0.05, 0.1, 0.3]),
       st.integers(1, 4))
def test_lead_times_equal_a_full_sort_of_every_row_each_draw(seed, pupils, fraction, levels):
    # few score levels, so that tie groups straddle the list's cut on most dates
    rng = np.random.default_rng(seed)
    cal = _calendar(date(2025, 9, 1), 80)
    dates = [date(2025, 9, 1), date(2025, 10, 1), date(2025, 11, 4)]
    label = (rng.random(pupils) < 0.3).astype(int)
    d30 = [cal[int(i)] if y else None for i, y in zip(rng.integers(0, 80, pupils), label)]
    rows = [(f"p{i}", d, float(rng.integers(0, levels)) / levels, label[i], d30[i])
            for d in dates for i in range(pupils) if rng.random() < 0.9]
    f = pd.DataFrame(rows, columns=["pupil_id", "as_of_date", "score", "label", "date_30th"])
    fast = M.lead_times(f, cal, fraction=fraction, n_draws=6, seed=seed)
    slow = _lead_times_by_full_sort(f, cal, fraction, 6, seed)
    assert fast.keys() == slow.keys()
    for key in fast:
        assert fast[key] == pytest.approx(slow[key], nan_ok=True), key
