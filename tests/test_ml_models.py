"""Temporal splits, the three models and their calibration, on frames whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml import evaluation as E
from ml import metrics as M
from ml.models import (LightGBMModel, LogisticModel, PlattCalibrator, RuleBaseline, build_models,
                       negative_sample)
from tests.ml_frames import FEATURES, make_frame

FAST_LGB = {"min_data_in_leaf": 20, "learning_rate": 0.2, "num_threads": 1}


def fast_models():
    return build_models(FEATURES, lgb_rounds=40, early_stopping=10, lgb_params=FAST_LGB)


# --- folds --------------------------------------------------------------------------------------

def test_folds_train_on_earlier_years_and_hold_out_the_latest_of_them():
    folds = E.temporal_folds([2021, 2022, 2023, 2024, 2025])
    assert [f.to_dict() for f in folds] == [
        {"test_year": 2024, "valid_years": [2023], "train_years": [2021, 2022], "strategy": "later_year"},
        {"test_year": 2025, "valid_years": [2024], "train_years": [2021, 2022, 2023], "strategy": "later_year"},
    ]
    assert E.production_fold([2021, 2022, 2023, 2024, 2025]).test_year == 2025
    # short history: one year before the test year is split by pupil; none -> no fold
    assert [f.to_dict() for f in E.temporal_folds([2024, 2025])] == [
        {"test_year": 2025, "valid_years": [2024], "train_years": [2024], "strategy": "pupil_holdout"}]
    assert E.temporal_folds([2025]) == []


def test_split_never_puts_the_test_year_or_unlabelled_rows_in_training():
    f = make_frame(years=(2022, 2023, 2024, 2025, 2026), unlabelled_years=(2026,), pupils=50)
    assert E.completed_years(f) == [2022, 2023, 2024, 2025]
    for fold in E.temporal_folds(E.completed_years(f)):
        train, valid, test = E.split(f, fold)
        assert set(train.school_year) == set(fold.train_years)
        assert set(valid.school_year) == set(fold.valid_years)
        assert set(test.school_year) == {fold.test_year}
        assert train.school_year.max() < valid.school_year.min() < fold.test_year
        assert train.label.notna().all() and valid.label.notna().all()


def test_pupil_holdout_separates_pupils():
    f = make_frame(years=(2024, 2025), pupils=200)
    (fold,) = E.temporal_folds([2024, 2025])
    train, valid, test = E.split(f, fold)
    assert set(train.pupil_id).isdisjoint(valid.pupil_id)
    assert 0.15 < valid.pupil_id.nunique() / 200 < 0.35
    assert set(test.school_year) == {2025}


def test_headline_is_the_first_as_of_date_in_november():
    dates = pd.to_datetime(["2025-05-01", "2025-10-01", "2025-11-04", "2025-12-01"])
    assert E.headline_date(dates) == pd.Timestamp("2025-11-04")
    assert E.headline_date(pd.to_datetime(["2025-06-02", "2025-12-01", "2026-01-08"])) == \
        pd.Timestamp("2025-12-01")


# --- the models ----------------------------------------------------------------------------------

def test_rule_baseline_projects_the_years_absences():
    f = pd.DataFrame({"att_ytd_absent": [5.0, 0.0, np.nan, 5.0],
                      "att_ytd_days": [50.0, 50.0, np.nan, 200.0],
                      "att_prev_absent": [0.0, 0.0, 17.0, 0.0], "att_prev_days": 200.0})
    # 5 absences in 50 days: 5 + 0.1 x 150 left = 20; no data this year: last year's 17
    np.testing.assert_allclose(RuleBaseline.projection(f), [20.0, 0.0, 17.0, 5.0])
    raw = RuleBaseline().raw(f)
    assert raw[0] > raw[2] > raw[3] > raw[1]


def test_a_feature_that_determines_the_label_is_found_by_every_model():
    f = make_frame(signal=True)
    (fold,) = E.temporal_folds(E.completed_years(f), 1)
    results = E.evaluate_fold(f, fold, fast_models())
    for r in results:
        test = f[f.school_year == fold.test_year]
        auc = M.roc_auc(test.label, r.test_raw)
        assert auc > 0.97, (r.model.name, auc)
        assert r.metrics.query("subset == 'all'").precision_top.min() > 0.9


def test_shuffled_labels_score_no_better_than_chance():
    """The leakage guard: with labels drawn at random the whole pipeline (split, fit, early
    stopping, calibration, evaluation) must not find anything."""
    f = make_frame(signal=False, pupils=600, seed=3)
    (fold,) = E.temporal_folds(E.completed_years(f), 1)
    results = E.evaluate_fold(f, fold, fast_models())
    test = f[f.school_year == fold.test_year]
    base = test.label.mean()
    for r in results:
        auc = M.roc_auc(test.label, r.test_raw)
        assert 0.42 < auc < 0.58, (r.model.name, auc)
        top = M.at_fraction(test.label.to_numpy(), r.test_raw, 0.05)
        assert top["precision"] < base + 0.12, (r.model.name, top, base)


def test_shuffling_the_labels_of_a_real_signal_destroys_it():
    f = make_frame(signal=True, pupils=600, seed=5)
    rng = np.random.default_rng(0)
    f["label"] = rng.permutation(f["label"].to_numpy())
    (fold,) = E.temporal_folds(E.completed_years(f), 1)
    (r,) = E.evaluate_fold(f, fold, [LightGBMModel(FEATURES, 40, 10, FAST_LGB)])
    test = f[f.school_year == fold.test_year]
    assert 0.42 < M.roc_auc(test.label, r.test_raw) < 0.58


def test_calibrated_probabilities_match_observed_rates():
    f = make_frame(signal=False, pupils=500, seed=1)
    # a noisy but real signal: label probability rises with absences
    rng = np.random.default_rng(2)
    p_true = 1 / (1 + np.exp(-(f["att_ytd_absent"] - 8) / 2))
    f["label"] = (rng.random(len(f)) < p_true).astype(float)
    (fold,) = E.temporal_folds(E.completed_years(f), 1)
    results = E.evaluate_fold(f, fold, fast_models())
    test = f[f.school_year == fold.test_year]
    for r in results:
        assert abs(r.test_prob.mean() - test.label.mean()) < 0.03, r.model.name
        assert M.expected_calibration_error(test.label, r.test_prob) < 0.05, r.model.name
        # calibration does not change the ranking
        assert M.roc_auc(test.label, r.test_prob) == pytest.approx(M.roc_auc(test.label, r.test_raw), abs=1e-6)


def test_platt_never_learns_a_reversed_ranking():
    z = np.linspace(-2, 2, 200)
    y = (z < 0).astype(float)  # the model ranks the held-out slice backwards
    cal = PlattCalibrator().fit(z, y)
    assert cal.slope == 0.0
    np.testing.assert_allclose(cal(z), 0.5)
    cal = PlattCalibrator().fit(z, (z > 0).astype(float))
    assert cal.slope > 0 and cal(2.0) > 0.9 and cal(-2.0) < 0.1
    assert PlattCalibrator.from_dict(cal.to_dict()) == cal


def test_lightgbm_contributions_sum_to_the_raw_score():
    f = make_frame(pupils=200)
    train, valid, test = E.split(f, E.temporal_folds(E.completed_years(f), 1)[0])
    m = LightGBMModel(FEATURES, 30, 10, FAST_LGB).fit(train, valid)
    contrib = m.contributions(test)
    assert contrib.shape == (len(test), len(FEATURES) + 1)
    np.testing.assert_allclose(contrib.sum(axis=1), m.raw(test), rtol=1e-5, atol=1e-5)
    imp = m.importance()
    assert imp.sort_values("gain").feature.iloc[-1] in ("att_ytd_absent", "att_d30_absent")


def test_logistic_handles_columns_that_are_entirely_missing():
    f = make_frame(pupils=150)
    f["mood_d30_mood_mean"] = np.nan
    train, valid, test = E.split(f, E.temporal_folds(E.completed_years(f), 1)[0])
    m = LogisticModel(FEATURES).fit(train, valid)
    assert np.isfinite(m.predict(test)).all()


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3000), rate=st.floats(0.0, 0.2), share=st.sampled_from([0.1, 0.25, 0.5, 1.0]),
       seed=st.integers(0, 100))
def test_the_negative_sample_keeps_every_positive_and_the_balanced_weights(n, rate, share, seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rate).astype(float)
    keep, weight = negative_sample(y, share, seed)
    pos = int(y.sum())
    assert set(np.flatnonzero(y == 1)) <= set(keep) and len(keep) == len(weight)
    kept_y = y[keep]
    # positives carry n/2 in all; the kept negatives n/2 on average (exactly when all are kept)
    assert weight[kept_y == 1].sum() == pytest.approx(n / 2 if pos else 0.0)
    neg_total = weight[kept_y == 0].sum()
    if share == 1 or n - pos == 0:
        assert neg_total == pytest.approx(n / 2 if n - pos else 0.0)
        assert len(keep) == n
    else:
        kept_neg = int((kept_y == 0).sum())
        assert neg_total == pytest.approx(kept_neg / share * n / (2 * (n - pos)))
        assert np.allclose(weight[kept_y == 0], n / (2 * (n - pos)) / share)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 300), cols=st.integers(1, 8), missing=st.floats(0.0, 1.0),
       seed=st.integers(0, 1000))
def test_the_median_imputer_gives_sklearns_numbers(rows, cols, missing, seed):
    from sklearn.impute import SimpleImputer

    from ml.models import MedianImputer

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, cols)).astype(np.float32)
    x[:, : cols // 2] = rng.integers(0, 4, (rows, cols // 2))  # ties, as counts have
    x[rng.random(x.shape) < missing] = np.nan
    other = rng.normal(size=(50, cols)).astype(np.float32)
    other[rng.random(other.shape) < 0.5] = np.nan  # NaNs where training had none
    ref = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True).fit(x)
    ours = MedianImputer().fit(x)
    for frame in (x, other):
        np.testing.assert_array_equal(ours.transform(frame), ref.transform(frame))


def test_the_sampled_logistic_regression_ranks_like_the_full_one():
    """The regression on a quarter of the negatives, weighted ×4, against all of them: the same
    objective in expectation, so the same ranking up to noise."""
    f = make_frame(pupils=600)
    train, valid, test = E.split(f, E.temporal_folds(E.completed_years(f), 1)[0])
    full = LogisticModel(FEATURES, negative_share=1.0).fit(train, valid)
    sampled = LogisticModel(FEATURES).fit(train, valid)
    assert sampled.params()["negatives_kept"] == 0.25
    a, b = full.raw(test), sampled.raw(test)
    assert np.corrcoef(a, b)[0, 1] > 0.97
    y = test.label.to_numpy()
    assert M.pr_auc(y, b) > M.pr_auc(y, a) - 0.05


def test_models_refuse_unlabelled_training_rows():
    f = make_frame(pupils=50)
    f.loc[f.index[:3], "label"] = np.nan
    with pytest.raises(ValueError, match="label"):
        RuleBaseline().fit(None, f)


def test_probability_of_the_raw_scores_is_what_predict_gives_and_one_fit_evaluates_like_before():
    """An evaluation scores each slice once and maps the raw scores with ``probability``: the
    same numbers as ``predict`` (which scores the rows again), for each of the three models."""
    f = make_frame(pupils=200)
    fold = E.temporal_folds(E.completed_years(f), 1)[0]
    train, valid, test = E.split(f, fold)
    for model in fast_models():
        r = E.fit_and_evaluate(model, train, valid, test, fold)
        for frame, raw, prob in ((test, r.test_raw, r.test_prob), (valid, r.valid_raw, r.valid_prob)):
            np.testing.assert_array_equal(raw, model.raw(frame))
            np.testing.assert_array_equal(prob, model.predict(frame))
            np.testing.assert_array_equal(model.probability(raw), model.predict(frame))
        assert 0 <= r.test_prob.min() <= r.test_prob.max() <= 1
        pd.testing.assert_frame_equal(r.metrics, E.evaluate_scores(test, model.raw(test),
                                                                   model.predict(test)))


def test_lightgbm_class_weight_follows_the_share_of_negatives_each_tree_sees():
    """"balanced" class weighting with balanced bagging (every positive, a share of the
    negatives per tree): the positives' weight is scaled by that share, so both classes weigh
    the same in every tree; an explicit scale_pos_weight is kept; the default is none."""
    f = make_frame(pupils=200)
    train, valid, _ = E.split(f, E.temporal_folds(E.completed_years(f), 1)[0])
    y = train.label.to_numpy()
    ratio = (len(y) - y.sum()) / y.sum()
    bagged = {**FAST_LGB, "bagging_freq": 1, "pos_bagging_fraction": 1.0, "neg_bagging_fraction": 0.25,
              "scale_pos_weight": "balanced"}
    for override, want in (({**bagged, "neg_bagging_fraction": 1.0}, ratio), (bagged, ratio * 0.25),
                           ({**bagged, "scale_pos_weight": 3.0}, 3.0), ({**bagged, "scale_pos_weight": 1.0}, 1.0),
                           (FAST_LGB, 1.0),  # the defaults: no class weighting
                           ({**bagged, "bagging_freq": 0}, ratio)):  # no bagging: no share
        m = LightGBMModel(FEATURES, 20, 5, override).fit(train, valid)
        assert m.train_params["scale_pos_weight"] == pytest.approx(want)


# --- LightGBM options: query groups, row weights -------------------------------------------------

def test_query_groups_sort_rows_stably_by_key_and_count_each_key():
    from ml.models import query_groups

    order, sizes = query_groups(np.array(["b", "a", "b", "c", "a"]))
    assert order.tolist() == [1, 4, 0, 2, 3]
    assert sizes.tolist() == [2, 2, 1]
    dates = pd.to_datetime(["2024-06-01", "2024-05-01", "2024-06-01"]).to_numpy()
    order, sizes = query_groups(dates)
    assert order.tolist() == [1, 0, 2] and sizes.tolist() == [1, 2]
    assert [a.tolist() for a in query_groups(np.array([]))] == [[], []]
    with pytest.raises(ValueError, match="1 rows have no key"):
        query_groups(np.array([1.0, np.nan, 2.0]))


def test_a_ranking_objective_grouped_by_as_of_date_ignores_the_rows_order_and_ranks():
    """Queries are the as-of dates whatever order the rows come in (LightGBM wants each query's
    rows together): rows with the dates interleaved (each date's rows in the same order) give the
    same scores, and the label's feature is found."""
    f = make_frame(pupils=200)
    train, valid, test = E.split(f, E.temporal_folds(E.completed_years(f), 1)[0])
    rank = {**FAST_LGB, "objective": "rank_xendcg", "metric": "map", "eval_at": [1_000_000],
            "min_gain_to_split": 0.0}
    a = LightGBMModel(FEATURES, 30, 10, rank, group_column="as_of_date").fit(train, valid)
    b = LightGBMModel(FEATURES, 30, 10, rank, group_column="as_of_date").fit(
        train.sort_values(["pupil_id", "as_of_date"]), valid.sort_values(["pupil_id", "as_of_date"]))
    np.testing.assert_allclose(a.raw(test), b.raw(test), rtol=1e-6, atol=1e-9)
    assert M.pr_auc(test.label, a.predict(test)) > 0.9
    assert a.params()["group_column"] == "as_of_date" and a.params()["objective"] == "rank_xendcg"
    with pytest.raises(ValueError, match="no query column 'week'"):
        LightGBMModel(FEATURES, 5, 5, rank, group_column="week").fit(train, valid)


def test_row_weights_decide_which_years_the_model_learns_from():
    """Training labels reversed in the older year: weighting that year out learns the signal,
    weighting the newer years out learns it backwards; all-ones weights change nothing."""
    f = make_frame(pupils=200, years=(2021, 2022, 2023, 2024))
    train, valid, test = E.split(f, E.temporal_folds(E.completed_years(f), 1)[0])
    old = train.school_year == train.school_year.min()
    train = train.assign(label=np.where(old, 1 - train.label, train.label))
    fits = {}
    for name, w in (("newer", (~old).astype(float)), ("older", old.astype(float)), ("ones", np.ones(len(train)))):
        fits[name] = LightGBMModel(FEATURES, 30, 10, FAST_LGB, weight_column="w").fit(train.assign(w=w), valid)
    assert M.roc_auc(test.label, fits["newer"].raw(test)) > 0.9
    # backwards (early stopping on the true held-out labels keeps it to its first trees)
    assert M.roc_auc(test.label, fits["older"].raw(test)) < 0.45
    plain = LightGBMModel(FEATURES, 30, 10, FAST_LGB).fit(train, valid)
    np.testing.assert_allclose(fits["ones"].raw(test), plain.raw(test))
    assert fits["ones"].params()["weight_column"] == "w" and "weight_column" not in plain.params()
    with pytest.raises(ValueError, match="2 rows .first row 1. are missing, negative or not finite"):
        w = np.ones(len(train))
        w[[1, 5]] = [-1.0, np.nan]
        LightGBMModel(FEATURES, 5, 5, FAST_LGB, weight_column="w").fit(train.assign(w=w), valid)
    with pytest.raises(ValueError, match="no weight column 'w'"):
        LightGBMModel(FEATURES, 5, 5, FAST_LGB, weight_column="w").fit(train, valid)
