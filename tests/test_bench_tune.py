"""The champion's tuning search (bench/tune_champion.py): its draws, FLAML's configuration in the
platform's terms, and the symbolic class weightings."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.tune_champion import SPACE, from_flaml, random_trials, resolve


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 40), seed=st.integers(0, 10_000))
def test_random_trials_are_distinct_reproducible_draws_from_the_space(n, seed):
    draws = random_trials(n, seed)
    assert len(draws) == n
    assert len({json.dumps(d, sort_keys=True) for d in draws}) == n
    for d in draws:
        assert set(d) == set(SPACE)
        assert all(d[k] in SPACE[k] for k in d)
    assert random_trials(n, seed) == draws


def test_random_trials_stop_at_the_size_of_a_small_space():
    space = {"a": [1, 2], "b": ["x"]}
    assert sorted(d["a"] for d in random_trials(10, 3, space)) == [1, 2]


def test_flamls_configuration_in_the_platforms_terms():
    cfg = {"n_estimators": 412, "num_leaves": 97, "min_child_samples": 18, "learning_rate": 0.031,
           "log_max_bin": 8, "colsample_bytree": 0.55, "reg_alpha": 0.002, "reg_lambda": 3.5}
    assert from_flaml(cfg) == {"num_leaves": 97, "min_data_in_leaf": 18, "learning_rate": 0.031,
                               "max_bin": 255, "feature_fraction": 0.55, "lambda_l1": 0.002,
                               "lambda_l2": 3.5, "bagging_fraction": 1.0, "neg_bagging_fraction": 1.0,
                               "bagging_freq": 0, "scale_pos_weight": 1.0, "max_depth": -1}
    # FLAML's row bagging kept as row bagging, not the platform's default balanced bagging
    rows = from_flaml({"subsample": 0.8})
    assert "bagging_freq" not in rows and rows["bagging_fraction"] == 0.8
    assert rows["neg_bagging_fraction"] == 1.0


def test_symbolic_class_weightings_resolve_on_the_training_labels():
    y = np.array([1.0] * 10 + [0.0] * 990)
    # "balanced" is the model's own (it knows the share of negatives each tree sees)
    assert resolve({"scale_pos_weight": "balanced", "num_leaves": 63}, y) == {"scale_pos_weight": "balanced",
                                                                              "num_leaves": 63}
    assert resolve({"scale_pos_weight": "sqrt"}, y) == {"scale_pos_weight": round(math.sqrt(99), 3)}
    assert resolve({"scale_pos_weight": 1.0}, y) == {"scale_pos_weight": 1.0}


def test_the_blend_share_is_the_held_out_best_and_a_tie_keeps_the_smaller_share():
    import numpy as np

    from bench.tune_champion import blend_weight

    y = np.array([0, 0, 0, 1, 0, 1, 0, 0], dtype=float)
    # LightGBM alone ranks a negative first; the logistic model ranks both cases first
    lgb = np.array([0.1, 0.9, 0.2, 0.5, 0.1, 0.4, 0.2, 0.1])
    logit = np.array([0.1, 0.1, 0.2, 0.8, 0.1, 0.7, 0.1, 0.2])
    w, figures = blend_weight(y, lgb, logit)
    assert figures[0.0] < 1.0 and w > 0.0 and figures[w] == 1.0
    assert w == min(k for k, v in figures.items() if v == 1.0)  # the smallest share that is best
    w_same, figures_same = blend_weight(y, lgb, lgb)  # nothing to gain: no logistic share
    assert w_same == 0.0 and len(set(figures_same.values())) == 1


# --- learner variants FLAML does not make -----------------------------------------------------

def test_monotone_constraints_rise_only_with_the_listed_features():
    from bench.tune_champion import MONOTONE_UP, monotone_constraints

    feats = ["grade", "att_ytd_absent", "att_ytd_absent_sick", "att_ytd_days", "att_d30_late",
             "la_prev_futoukou", "nrs_d90_visits", "nrs_d90_headache", "mood_d30_mood_mean", "att_trend_absent_d30"]
    assert monotone_constraints(feats) == [0, 1, 0, 0, 1, 1, 1, 0, 0, 0]
    # every window of every constrained attendance measure, no sick absence, no denominators
    assert {"att_d30_absent", "att_d90_absent_rate", "att_prev_absent_other", "att_ytd_reluctant",
            "att_prev_separate_room", "nrs_prev_visits", "la_years_listed_before"} <= set(MONOTONE_UP)
    assert not [f for f in MONOTONE_UP if "sick" in f or f.endswith(("_days", "_missing"))
                and not f.startswith("la_")]
    assert len(MONOTONE_UP) == len(set(MONOTONE_UP)) == 49


def test_recency_weights_decay_by_year_from_the_latest():
    from bench.tune_champion import recency_weights

    assert recency_weights([2021, 2023, 2022, 2023], 0.5).tolist() == [0.25, 1.0, 0.5, 1.0]
    assert recency_weights(np.array([2021, 2022, 2023]), 0.7) == pytest.approx([0.49, 0.7, 1.0])
    assert recency_weights([2022, 2023], 1.0).tolist() == [1.0, 1.0]
    for bad in (0.0, 1.5, -0.5):
        with pytest.raises(ValueError, match="decay must be in"):
            recency_weights([2021], bad)
    with pytest.raises(ValueError, match="1 rows have no school year"):
        recency_weights([2021, np.nan], 0.7)


def test_per_date_average_precision_is_the_mean_of_each_lists():
    from bench.tune_champion import per_date_pr_auc

    y = [1, 0, 0, 1, 0, 1, 0, 0]
    s = [0.9, 0.1, 0.2, 0.3, 0.8, 0.1, 0.2, 0.3]
    d = ["a", "a", "a", "a", "b", "b", "b", "b"]
    # list a: both cases ranked 1st and 2nd (AP 1); list b: its one case last of 4 (AP 1/4)
    assert per_date_pr_auc(y, s, d) == pytest.approx((1.0 + 0.25) / 2)
    # a date with no case is left out
    assert per_date_pr_auc(y + [0, 0], s + [0.5, 0.4], d + ["c", "c"]) == pytest.approx(0.625)


def test_learner_keys_become_parameters_options_and_weights():
    import pandas as pd

    from bench.tune_champion import RANK_PARAMS, learner, variant_name

    train = pd.DataFrame({"label": [1.0, 0.0, 0.0, 0.0], "school_year": [2021, 2022, 2023, 2023],
                          "as_of_date": pd.to_datetime(["2021-05-01", "2022-05-01", "2023-05-01", "2023-06-01"])})
    feats = ["att_ytd_absent", "grade"]
    override, options, rows, _ = learner({"monotone": "advanced", "num_leaves": 31}, feats, train)
    assert override == {"monotone_constraints": [1, 0], "monotone_constraints_method": "advanced", "num_leaves": 31}
    assert options == {} and rows is train
    override, options, _, _ = learner({"rank": "rank_xendcg"}, feats, train)
    assert override == {**RANK_PARAMS, "objective": "rank_xendcg"}
    assert override["neg_bagging_fraction"] == 1.0 and options == {"group_column": "as_of_date"}
    override, options, rows, _ = learner({"recency": 0.5, "scale_pos_weight": "sqrt"}, feats, train)
    assert override == {"scale_pos_weight": round(math.sqrt(3), 3)}
    assert options == {"weight_column": "_recency_weight"}
    assert rows._recency_weight.tolist() == [0.25, 0.5, 1.0, 1.0] and "_recency_weight" not in train
    # lambdarank: queries are random parts of each date (its limit of rows per query)
    _, options, rows, held = learner({"rank": "lambdarank"}, feats, train, train.iloc[:2])
    assert options == {"group_column": "_query"}
    assert rows._query.tolist() == ["2021-05-01/0", "2022-05-01/0", "2023-05-01/0", "2023-06-01/0"]
    assert held._query.tolist() == ["2021-05-01/0", "2022-05-01/0"]
    for bad in ({"rank": "binary"}, {"monotone": "strict"}):
        with pytest.raises(ValueError, match="must be"):
            learner(bad, feats, train)
    assert variant_name({}) == "defaults"
    assert variant_name({"recency": 0.7}) == "recency_0.7"
    assert variant_name({"rank": "rank_xendcg"}) == "rank_xendcg"
    assert variant_name({"rank": "lambdarank", "monotone": "advanced", "seed": 3}) == \
        "monotone_advanced__rank_lambdarank__override"


def test_split_queries_cut_each_date_into_near_equal_random_parts_under_the_limit():
    import pandas as pd

    from bench.tune_champion import split_queries

    dates = ["2024-05-01"] * 25 + ["2024-06-03"] * 10 + ["2024-05-01"] * 5
    keys = split_queries(pd.to_datetime(dates), max_rows=10, seed=1)
    counts = pd.Series(keys).value_counts().to_dict()
    # 30 rows of May in 3 parts of 10, June's 10 rows in one query
    assert counts == {"2024-05-01/0": 10, "2024-05-01/1": 10, "2024-05-01/2": 10, "2024-06-03/0": 10}
    assert all(k.startswith(d) for k, d in zip(keys, dates))
    assert (split_queries(pd.to_datetime(dates), max_rows=10, seed=1) == keys).all()
    assert sorted(pd.Series(split_queries(pd.to_datetime(["2024-05-01"] * 11), max_rows=10)).value_counts()) == [5, 6]
