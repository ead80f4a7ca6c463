"""A logged tuning search for the champion's LightGBM, on the champion's own fold.

    .venv/bin/python bench/tune_champion.py --home .toda --random 16 --max-minutes 45

Each trial is the platform's own :class:`ml.models.LightGBMModel` with some parameters changed,
fitted on the champion's training rows and early-stopped and calibrated on its held-out slice.
The trials are the fixed list ``TRIALS`` (the champion's defaults first, then neighbours of what
FLAML chose), FLAML's own best configuration translated into the platform's model when
``bench/flaml_peer.py`` has been run in this home, then ``--random`` draws (fixed ``--seed``)
from ``SPACE``: leaves, minimum leaf size, class weighting (balanced, square root, none),
learning rate (with up to ``--rounds`` rounds and early stopping), feature and bagging
fractions, L2 and minimum split gain. Trials are **chosen on the held-out slice** (average
precision there), never on the test year; only the chosen one is then scored on the test year's
headline list beside the champion (and beside the FLAML peer on the same pupils, when its
scores are there), with bootstrap intervals for the differences. Every trial is a nested run of
``tune_champion_<year>`` in the MLflow experiment ``futoukou_risk_peers``. A winner ahead
beyond noise on the test list is a candidate for the LightGBM defaults (the promotion gate
still decides).

A ``--given`` override may also hold learner changes FLAML does not make (``learner``):
``{"monotone": "advanced"}`` (risk only rises with the absence, lateness, nurse-visit and
last-year-survey features of ``MONOTONE_UP``), ``{"rank": "rank_xendcg"}`` (a ranking objective,
one query per as-of date, early-stopped on the held-out lists' mean average precision, still
Platt-calibrated), ``{"recency": 0.7}`` (older training years down-weighted). ``--score-all``
scores every trial on the test list beside the champion and FLAML (each also judged on the
held-out slice: pooled and per-date average precision).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.flaml_peer import (EXPERIMENT, METRICS, load_champion_fold, load_peer_scores,  # noqa: E402
                              log_comparison, print_comparison)

# the champion's defaults first, then the defaults before 2026-12-01 (31 leaves of 100, rate
# 0.05, balanced class weighting, a quarter of the negatives per tree), then neighbours
PREVIOUS_DEFAULTS = {"learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 100, "min_gain_to_split": 0.0,
                     "feature_fraction": 0.7, "neg_bagging_fraction": 0.25, "lambda_l2": 1.0,
                     "scale_pos_weight": "balanced", "max_depth": -1}
TRIALS = [
    {},
    PREVIOUS_DEFAULTS,
    {"scale_pos_weight": "balanced"},
    {"num_leaves": 127, "min_data_in_leaf": 30},
    {"num_leaves": 31, "min_data_in_leaf": 50},
    {"feature_fraction": 0.5},
    {"learning_rate": 0.03, "lambda_l2": 10.0},
    {"neg_bagging_fraction": 1.0, "bagging_freq": 0},
]

# the random search's space; for scale_pos_weight "balanced" is negatives / positives of the
# training rows times the share of negatives bagged, "sqrt" the square root of negatives / positives
SPACE = {
    "num_leaves": [15, 31, 63, 127, 255],
    "min_data_in_leaf": [20, 50, 100, 200, 400],
    "scale_pos_weight": ["balanced", "sqrt", 1.0],
    "learning_rate": [0.02, 0.03, 0.05, 0.1],
    "feature_fraction": [0.3, 0.5, 0.7, 0.9],
    "bagging_fraction": [0.7, 0.8, 1.0],      # used only where neg_bagging_fraction is 1.0
    "neg_bagging_fraction": [0.25, 0.5, 1.0],  # balanced bagging: every positive, this share of negatives
    "lambda_l2": [0.0, 1.0, 10.0, 30.0],
    "min_gain_to_split": [0.0, 0.1, 1.0],
}

# FLAML's LGBMEstimator names → LightGBM's own
FLAML_NAMES = {"num_leaves": "num_leaves", "min_child_samples": "min_data_in_leaf",
               "learning_rate": "learning_rate", "colsample_bytree": "feature_fraction",
               "subsample": "bagging_fraction", "reg_alpha": "lambda_l1", "reg_lambda": "lambda_l2"}


def random_trials(n: int, seed: int = 0, space: dict = SPACE) -> list[dict]:
    """``n`` distinct draws from ``space`` (one value per parameter), reproducible by ``seed``."""
    rng = random.Random(seed)
    out, seen = [], set()
    size = math.prod(len(v) for v in space.values())
    while len(out) < min(n, size):
        draw = {k: rng.choice(v) for k, v in space.items()}
        key = json.dumps(draw, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(draw)
    return out


def from_flaml(config: dict) -> dict:
    """FLAML's best LightGBM configuration as an override of the platform's model: the same
    tree shape, rates and penalties, no bagging unless it chose some (LightGBM's scikit-learn
    default), no class weighting (FLAML fitted none); its number of trees is left to early
    stopping on the held-out slice."""
    out = {FLAML_NAMES[k]: v for k, v in config.items() if k in FLAML_NAMES}
    if "log_max_bin" in config:
        out["max_bin"] = int(2 ** int(config["log_max_bin"]) - 1)
    out.setdefault("bagging_fraction", 1.0)
    out["neg_bagging_fraction"] = 1.0  # FLAML bags rows, not classes (the platform's default does)
    if out["bagging_fraction"] >= 1.0:
        out["bagging_freq"] = 0
    out["scale_pos_weight"] = 1.0
    out["max_depth"] = -1  # FLAML's LightGBM grows trees of any depth
    return out


def resolve(override: dict, y) -> dict:
    """The override with "sqrt" class weighting made a number for these training labels: the
    square root of negatives / positives. "balanced" is left to the model, which weighs the
    positives as all the negatives each tree sees (negatives / positives times the share of
    negatives bagged), as the defaults before 2026-12-01 did."""
    out = dict(override)
    if out.get("scale_pos_weight") == "sqrt":
        pos = max(float(y.sum()), 1.0)
        out["scale_pos_weight"] = round(math.sqrt((len(y) - pos) / pos), 3)
    return out


# Learner changes FLAML does not make (issue 12), as keys of a trial's override that the bench
# turns into the model's parameters and options (see ``learner``):
#   "monotone": "advanced" | "intermediate" | "basic" — risk may only rise with MONOTONE_UP;
#   "rank": "rank_xendcg" | "lambdarank" — a ranking objective, one query per as-of date (each
#           date's list is ranked on its own, as the case meeting reads it);
#   "recency": a decay d — training rows of the latest training year weigh 1, a year older d, ...
#
# Features whose effect on the risk has one sign, holding the others fixed: more absence of the
# kinds the label counts (all absence, other-than-illness absence, its rate; reluctance; Monday
# and after-a-break absence; streaks), more late arrivals and early leaving, attending in the
# nurse's room or a separate room, more nurse-office visits (going home from one, resting
# there), and last year's long-absence survey (listed, counted 不登校, its days; years listed
# before). Not constrained: sick absence (given all absence, more sick days means fewer of the
# days the label counts), school days (a denominator), missing flags, trends, and every survey.
_ATT_WINDOWS = ("d30", "d90", "ytd", "prev")
MONOTONE_UP = (
    tuple(f"att_{w}_{m}" for w in _ATT_WINDOWS
          for m in ("absent", "absent_other", "absent_rate", "late", "early_leave", "nurse_room",
                    "separate_room"))
    + tuple(f"att_{w}_{m}" for w in ("ytd", "prev") for m in ("reluctant", "monday_absent", "after_break_absent"))
    + ("att_current_absent_streak", "att_ytd_max_absent_streak",
       "la_prev_listed", "la_prev_futoukou", "la_prev_absent_days", "la_prev_days_futoukou",
       "la_years_futoukou_before", "la_years_listed_before")
    + tuple(f"nrs_{w}_visits" for w in _ATT_WINDOWS)
    + ("nrs_d90_went_home", "nrs_ytd_went_home", "nrs_d90_rest_minutes")
)

# a ranking objective in the platform's model: balanced bagging and class weighting are the
# binary objective's (LightGBM refuses them), so half of the rows per tree instead; early
# stopping on the mean average precision of the held-out slice's lists (MAP at a cut beyond any
# list's length is each list's whole average precision); gains of a ranking loss are on another
# scale than the binary one's, so no minimum split gain
RANK_PARAMS = {"metric": "map", "eval_at": [1_000_000], "pos_bagging_fraction": 1.0,
               "neg_bagging_fraction": 1.0, "bagging_fraction": 0.5, "bagging_freq": 1,
               "scale_pos_weight": 1.0, "min_gain_to_split": 0.0}
LEARNER_KEYS = ("monotone", "rank", "recency")
LAMBDARANK_MAX_ROWS = 10_000  # LightGBM's lambdarank refuses a query of more rows


def split_queries(dates, max_rows: int = LAMBDARANK_MAX_ROWS, seed: int = 0):
    """A query key per row: its as-of date and one of the k = ceil(rows of the date / max_rows)
    random, near-equal parts of that date's rows ("2024-05-01/0", "2024-05-01/1", ...). Pairs
    within a random part are an unbiased sample of the date's pairs, so a pairwise loss on the
    parts still ranks the whole list, as lambdarank's query limit requires."""
    import numpy as np
    import pandas as pd

    dates = pd.Series(pd.to_datetime(np.asarray(dates))).dt.strftime("%Y-%m-%d").to_numpy()
    rng = np.random.default_rng(seed)
    out = np.empty(len(dates), dtype=object)
    for d in sorted(set(dates)):
        rows = np.flatnonzero(dates == d)
        k = -(-len(rows) // max_rows)
        part = np.empty(len(rows), dtype=int)
        part[rng.permutation(len(rows))] = np.arange(len(rows)) * k // len(rows)
        out[rows] = [f"{d}/{p}" for p in part]
    return out


def monotone_constraints(features) -> list[int]:
    """LightGBM's ``monotone_constraints`` for ``features``: 1 for those of MONOTONE_UP, else 0."""
    up = set(MONOTONE_UP)
    return [1 if f in up else 0 for f in features]


def recency_weights(years, decay: float):
    """Each training row's weight: ``decay`` to the power of its school year's distance from the
    latest year among them (that year's rows weigh 1)."""
    import numpy as np

    if not 0 < decay <= 1:
        raise ValueError(f"recency decay must be in (0, 1], got {decay}")
    years = np.asarray(years, dtype=float)
    if len(years) == 0:
        return years
    if np.isnan(years).any():
        raise ValueError(f"recency weights: {int(np.isnan(years).sum())} rows have no school year")
    return decay ** (years.max() - years)


def per_date_pr_auc(y, score, dates) -> float:
    """The mean over as-of dates of each date's average precision (a list is read one date at
    a time; dates without a case are left out)."""
    import numpy as np
    import pandas as pd

    from ml import metrics as M

    frame = pd.DataFrame({"y": np.asarray(y, dtype=float), "s": np.asarray(score, dtype=float),
                          "d": np.asarray(dates)})
    figures = [M.pr_auc(g.y, g.s) for _, g in frame.groupby("d", sort=True) if g.y.sum() > 0]
    return float(np.mean(figures)) if figures else float("nan")


def variant_name(symbolic: dict) -> str:
    """A short name of a trial for the tables: its learner keys, or "defaults" / "override"."""
    parts = [str(v) if str(v).startswith(k) else f"{k}_{v}"  # "rank_xendcg", not "rank_rank_xendcg"
             for k, v in ((k, symbolic[k]) for k in LEARNER_KEYS if k in symbolic)]
    rest = {k: v for k, v in symbolic.items() if k not in LEARNER_KEYS}
    if rest:
        parts.append("override")
    return "__".join(parts) or "defaults"  # MLflow's metric names allow no "+"


def learner(symbolic: dict, features, train, valid=None):
    """(parameter override, LightGBMModel options, training rows, held-out rows) of a trial: the
    learner keys made parameters (monotone constraints, a ranking objective grouped by as-of date
    — by random parts of it for lambdarank, see :func:`split_queries`) or a weight column of the
    training rows (recency); the other keys as :func:`resolve` makes them."""
    rest = {k: v for k, v in symbolic.items() if k not in LEARNER_KEYS}
    override, options = {}, {}
    if "rank" in symbolic:
        if symbolic["rank"] not in ("rank_xendcg", "lambdarank"):
            raise ValueError(f"rank objective must be rank_xendcg or lambdarank, got {symbolic['rank']!r}")
        override |= RANK_PARAMS | {"objective": symbolic["rank"]}
        options["group_column"] = "as_of_date"
        if symbolic["rank"] == "lambdarank":
            options["group_column"] = "_query"
            train = train.assign(_query=split_queries(train.as_of_date))
            valid = None if valid is None else valid.assign(_query=split_queries(valid.as_of_date))
    if "monotone" in symbolic:
        if symbolic["monotone"] not in ("basic", "intermediate", "advanced"):
            raise ValueError(f"monotone method must be basic, intermediate or advanced, got {symbolic['monotone']!r}")
        override |= {"monotone_constraints": monotone_constraints(features),
                     "monotone_constraints_method": symbolic["monotone"]}
    if "recency" in symbolic:
        train = train.assign(_recency_weight=recency_weights(train.school_year, float(symbolic["recency"])))
        options["weight_column"] = "_recency_weight"
    override |= resolve(rest, train.label.to_numpy(dtype=float))
    return override, options, train, valid


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


BLEND_WEIGHTS = (0.0, 0.25, 0.5, 0.75)  # the logistic model's share of a blend's probability


def blend_weight(y_valid, lgb_valid, logit_valid, weights=BLEND_WEIGHTS) -> tuple[float, dict]:
    """The logistic model's share of the blend ``(1 - w) * LightGBM + w * logistic`` (calibrated
    probabilities) with the highest average precision on the held-out slice, and every share's
    figure; a tie keeps the smaller share."""
    from ml import metrics as M

    figures = {w: M.pr_auc(y_valid, (1 - w) * lgb_valid + w * logit_valid) for w in weights}
    best = max(figures, key=lambda w: (figures[w], -w))
    return best, figures


def run(home=None, trials: int = len(TRIALS), n_random: int = 0, seed: int = 0, rounds: int = 600,
        max_minutes: float | None = None, n_boot: int = 500, log=print, flaml_trial: bool = True,
        given: list[dict] | None = None, seeds: int = 1, blend: bool = False, score_all: bool = False) -> dict:
    from ml import metrics as M
    from ml.ablation import bootstrap_table
    from ml.models import LightGBMModel
    from ml.pipeline import score_with
    from ml.tracking import Tracker, tracking_uri

    paths, version, booster, meta, fold, feats, train, valid, test = load_champion_fold(home, log)
    tracker = Tracker(tracking_uri(paths.mlflow_db), paths.mlflow_artifacts.as_uri(), EXPERIMENT)
    yv = valid.label.to_numpy(dtype=float)

    def fit_trial(symbolic: dict, seed: int | None = None):
        override, options, rows, held = learner(symbolic, feats, train, valid)
        if seed is not None:
            override = {**override, "seed": seed}
        model = LightGBMModel(feats, num_boost_round=rounds, params_override=override, **options)
        return model.fit(rows, held), override
    if given:  # a configuration chosen earlier, fitted again without a search
        plan = [("given", o) for o in given]
    else:
        plan = [("fixed", o) for o in TRIALS[:trials]]
        flaml_report = paths.reports / "flaml_peer.json"
        if flaml_trial and flaml_report.exists():
            plan.append(("flaml", from_flaml(json.loads(flaml_report.read_text())["flaml_best_config"])))
        plan += [("random", o) for o in random_trials(n_random, seed)]
    started, results = time.perf_counter(), []
    with tracker.run(f"tune_champion_{fold.test_year}", tags={"kind": "tuning",
                                                              "champion_version": str(version)}):
        tracker.log_params({f"fold_{k}": v for k, v in fold.to_dict().items()}
                           | {"random_trials": n_random, "seed": seed, "max_rounds": rounds})
        for i, (origin, symbolic) in enumerate(plan):
            if results and max_minutes is not None and time.perf_counter() - started > max_minutes * 60:
                log(f"time budget of {max_minutes} min spent: {i} of {len(plan)} trials run")
                break
            t0, c0 = time.perf_counter(), _cpu()
            model, override = fit_trial(symbolic)
            raw_valid = model.raw(valid)
            held_ap = M.pr_auc(yv, raw_valid)
            held_dates = per_date_pr_auc(yv, raw_valid, valid.as_of_date.to_numpy())
            wall, cpu = time.perf_counter() - t0, _cpu() - c0
            best_it = model.train_params.get("best_iteration", 0)
            name = variant_name(symbolic)
            if any(r["name"] == name for r in results):
                name = f"{name}_{i}"
            results.append({"trial": i, "origin": origin, "name": name, "symbolic": symbolic,
                            "override": override, "held_out_pr_auc": held_ap,
                            "held_out_per_date_pr_auc": held_dates, "best_iteration": best_it,
                            "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1), "model": model})
            with tracker.run(f"trial_{i}", nested=True, tags={"kind": "tuning_trial", "origin": origin,
                                                              "variant": name}):
                tracker.log_params({"override": json.dumps(symbolic) or "{}", **model.params()})
                tracker.log_metrics({"held_out_pr_auc": held_ap, "held_out_per_date_pr_auc": held_dates,
                                     "best_iteration": best_it, "fit_wall_seconds": wall, "fit_cpu_seconds": cpu})
            log(f"trial {i} ({origin}, {name}) {symbolic}: held-out PR-AUC {held_ap:.4f} (per date "
                f"{held_dates:.4f}), {best_it} rounds, {wall:.0f} s wall, {cpu:.0f} s CPU")
        best = max(results, key=lambda r: r["held_out_pr_auc"])
        _, champion = score_with(booster, meta, test)
        y = test.label.to_numpy(dtype=float)
        scores = {"champion": champion, "tuned": best["model"].predict(test)}
        if score_all:  # every trial on the test list (the choice above stays the held-out slice's)
            scores |= {r["name"]: r["model"].predict(test) for r in results}
        extra: dict = {}
        if seeds > 1 or blend:
            # the chosen configuration refitted with other seeds (its own seed's model included),
            # probabilities averaged: bagging's and feature sampling's luck averaged out
            models = [best["model"]]
            for k in range(1, seeds):
                t0, c0 = time.perf_counter(), _cpu()
                m, _ = fit_trial(best["symbolic"], seed=7 + k)
                models.append(m)
                log(f"seed {7 + k}: held-out PR-AUC {M.pr_auc(yv, m.raw(valid)):.4f}, "
                    f"{time.perf_counter() - t0:.0f} s wall, {_cpu() - c0:.0f} s CPU")
            lgb_valid = sum(m.predict(valid) for m in models) / len(models)
            lgb_test = sum(m.predict(test) for m in models) / len(models) if seeds > 1 else scores["tuned"]
            if seeds > 1:
                scores[f"tuned_{seeds}_seeds"] = lgb_test
                extra["seeds_held_out_pr_auc"] = M.pr_auc(yv, lgb_valid)
            if blend:
                from ml.models import LogisticModel

                t0, c0 = time.perf_counter(), _cpu()
                logit = LogisticModel(feats).fit(train, valid)
                w, figures = blend_weight(yv, lgb_valid, logit.predict(valid))
                log(f"logistic fitted ({time.perf_counter() - t0:.0f} s wall, {_cpu() - c0:.0f} s CPU); "
                    f"held-out PR-AUC by its share of the blend: "
                    + ", ".join(f"{k:g}: {v:.4f}" for k, v in figures.items()) + f"; chosen {w:g}")
                scores["blend"] = (1 - w) * lgb_test + w * logit.predict(test)
                extra["blend_logistic_share"] = w
                extra["blend_held_out_pr_auc"] = {str(k): v for k, v in figures.items()}
            tracker.log_params({"seeds": seeds, "blend_logistic_share": extra.get("blend_logistic_share", "")})
        peer = load_peer_scores(paths, test)
        if peer is not None:
            scores["flaml"] = peer
        table = bootstrap_table(y, test.school_code.to_numpy(), scores, "champion",
                                n_boot=n_boot, seed=seed, metrics=METRICS)
        tracker.log_params({"chosen_trial": best["trial"], "chosen_override": json.dumps(best["override"])})
        log_comparison(tracker, table, "tuned")
        for variant in scores.keys() - {"champion", "tuned", "flaml"}:  # seeds, blend: figures under their name
            rows = table[table.variant == variant]
            tracker.log_metrics({f"{variant}_{r.metric}{s}": getattr(r, c) for r in rows.itertuples()
                                 for s, c in (("", "value"), ("_delta", "delta"), ("_delta_low", "delta_low"),
                                              ("_delta_high", "delta_high"))})
        vs_peer = None
        if peer is not None:
            vs_peer = bootstrap_table(y, test.school_code.to_numpy(),
                                      {"flaml": peer, **{k: v for k, v in scores.items() if k not in ("champion", "flaml")}},
                                      "flaml", n_boot=n_boot, seed=seed, metrics=METRICS)
            for variant in vs_peer.variant.unique():
                if variant == "flaml":
                    continue
                prefix = "vs_flaml" if variant == "tuned" else f"{variant}_vs_flaml"
                tracker.log_metrics({f"{prefix}_{r.metric}{s}": getattr(r, c)
                                     for r in vs_peer[vs_peer.variant == variant].itertuples()
                                     for s, c in (("", "delta"), ("_low", "delta_low"), ("_high", "delta_high"))})
            tracker.log_table(vs_peer, "comparison/tuned_vs_flaml.csv")
    result = {"champion_version": version, "fold": fold.to_dict(), "as_of_date": str(test.as_of_date.iloc[0].date()),
              "pupils": int(len(test)), "cases": int(y.sum()),
              "search_wall_seconds": round(time.perf_counter() - started, 1),
              "trials": [{k: v for k, v in r.items() if k != "model"} for r in results],
              "chosen": {k: v for k, v in best.items() if k != "model"}, **extra,
              "comparison": table.to_dict("records"),
              "tuned_vs_flaml": None if vs_peer is None else vs_peer.to_dict("records")}
    out = paths.reports / "tune_champion.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float), encoding="utf-8")
    result["written_to"] = str(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", default=os.environ.get("TODA_HOME", ".toda"))
    parser.add_argument("--trials", type=int, default=len(TRIALS), help="how many of the fixed trials")
    parser.add_argument("--random", type=int, default=0, help="random draws from SPACE after them")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=600, help="most boosting rounds (early stopping)")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop starting trials after this")
    parser.add_argument("--n-boot", type=int, default=500)
    parser.add_argument("--no-flaml-trial", action="store_true",
                        help="skip FLAML's configuration as a trial (965 leaves: ~20 min of CPU)")
    parser.add_argument("--given", type=json.loads, action="append", metavar="JSON",
                        help="fit this override (e.g. a configuration chosen by an earlier search) "
                             "instead of searching; may be given more than once")
    parser.add_argument("--seeds", type=int, default=1, help="average the chosen configuration over N seeds")
    parser.add_argument("--blend", action="store_true",
                        help="also blend with the logistic model, its share chosen on the held-out slice")
    parser.add_argument("--score-all", action="store_true",
                        help="score every trial on the test list too (the choice is still the held-out slice's)")
    args = parser.parse_args()
    r = run(args.home, args.trials, args.random, args.seed, args.rounds, args.max_minutes, args.n_boot,
            flaml_trial=not args.no_flaml_trial, given=args.given, seeds=args.seeds, blend=args.blend,
            score_all=args.score_all)
    c = r["chosen"]
    print(f"chosen on the held-out slice: trial {c['trial']} ({c['origin']}, {c['name']}) {c['symbolic']}, "
          f"held-out PR-AUC {c['held_out_pr_auc']:.4f}, {c['best_iteration']} rounds")
    variants = [v for v in dict.fromkeys(x["variant"] for x in r["comparison"]) if v not in ("champion", "flaml")]
    for v in variants:
        print_comparison(r, v)
        if r["tuned_vs_flaml"]:
            print_comparison(r, v, reference="flaml", key="tuned_vs_flaml")


if __name__ == "__main__":
    main()
