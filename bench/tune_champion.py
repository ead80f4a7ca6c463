"""A logged tuning search for the champion's LightGBM, on the champion's own fold.

    .venv/bin/python bench/tune_champion.py --home .toda --trials 8

Each trial is the platform's own :class:`ml.models.LightGBMModel` with some parameters changed
(leaves, minimum leaf size, class weighting, learning rate, feature fraction), fitted on the
champion's training rows and early-stopped and calibrated on its held-out slice. Trials are
**chosen on the held-out slice** (average precision there), never on the test year; only the
chosen one is then scored on the test year's headline list beside the champion, with bootstrap
intervals for the difference. Every trial is a nested run of ``tune_champion_<year>`` in the
MLflow experiment ``futoukou_risk_peers``. A winner ahead beyond noise on the test list is a
candidate for ``TrainConfig.lgb_params`` (the promotion gate still decides).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.flaml_peer import (EXPERIMENT, METRICS, load_champion_fold, log_comparison,  # noqa: E402
                              print_comparison)

# the champion's defaults first, then neighbours FLAML's search pointed at (larger leaves, no
# class weighting), then a few others
TRIALS = [
    {},
    {"num_leaves": 63, "min_data_in_leaf": 50},
    {"scale_pos_weight": 1.0},
    {"num_leaves": 63, "min_data_in_leaf": 50, "scale_pos_weight": 1.0},
    {"num_leaves": 127, "min_data_in_leaf": 30, "scale_pos_weight": 1.0, "learning_rate": 0.03},
    {"num_leaves": 15, "min_data_in_leaf": 200},
    {"feature_fraction": 0.4, "num_leaves": 63, "min_data_in_leaf": 50},
    {"learning_rate": 0.02, "num_leaves": 31, "lambda_l2": 10.0},
]


def run(home=None, trials: int = len(TRIALS), n_boot: int = 500, seed: int = 0, log=print) -> dict:
    from ml import metrics as M
    from ml.ablation import bootstrap_table
    from ml.models import LightGBMModel
    from ml.pipeline import score_with
    from ml.tracking import Tracker, tracking_uri

    paths, version, booster, meta, fold, feats, train, valid, test = load_champion_fold(home, log)
    tracker = Tracker(tracking_uri(paths.mlflow_db), paths.mlflow_artifacts.as_uri(), EXPERIMENT)
    yv = valid.label.to_numpy(dtype=float)
    results = []
    with tracker.run(f"tune_champion_{fold.test_year}", tags={"kind": "tuning",
                                                              "champion_version": str(version)}):
        tracker.log_params({f"fold_{k}": v for k, v in fold.to_dict().items()})
        for i, override in enumerate(TRIALS[:trials]):
            model = LightGBMModel(feats, params_override=override)
            model.fit(train, valid)
            held_ap = M.pr_auc(yv, model.raw(valid))
            results.append((held_ap, i, override, model))
            with tracker.run(f"trial_{i}", nested=True, tags={"kind": "tuning_trial"}):
                tracker.log_params({"override": json.dumps(override) or "{}", **model.params()})
                tracker.log_metrics({"held_out_pr_auc": held_ap,
                                     "best_iteration": model.train_params.get("best_iteration", 0)})
            log(f"trial {i} {override}: held-out PR-AUC {held_ap:.4f}")
        held_ap, best_i, best, model = max(results, key=lambda r: r[0])
        _, champion = score_with(booster, meta, test)
        y = test.label.to_numpy(dtype=float)
        table = bootstrap_table(y, test.school_code.to_numpy(),
                                {"champion": champion, "tuned": model.predict(test)}, "champion",
                                n_boot=n_boot, seed=seed, metrics=METRICS)
        tracker.log_params({"chosen_trial": best_i, "chosen_override": json.dumps(best) or "{}"})
        log_comparison(tracker, table, "tuned")
    result = {"champion_version": version, "fold": fold.to_dict(),
              "trials": [{"trial": i, "override": o, "held_out_pr_auc": a} for a, i, o, _ in results],
              "chosen": {"trial": best_i, "override": best, "held_out_pr_auc": held_ap},
              "comparison": table.to_dict("records")}
    out = paths.reports / "tune_champion.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float), encoding="utf-8")
    result["written_to"] = str(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", default=os.environ.get("TODA_HOME", ".toda"))
    parser.add_argument("--trials", type=int, default=len(TRIALS))
    parser.add_argument("--n-boot", type=int, default=500)
    args = parser.parse_args()
    r = run(args.home, args.trials, args.n_boot)
    print(f"chosen on the held-out slice: trial {r['chosen']['trial']} {r['chosen']['override']}")
    print_comparison(r, "tuned")


if __name__ == "__main__":
    main()
