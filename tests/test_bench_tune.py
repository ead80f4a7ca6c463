"""The champion's tuning search (bench/tune_champion.py): its draws, FLAML's configuration in the
platform's terms, and the symbolic class weightings."""

import json
import math

import numpy as np
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
