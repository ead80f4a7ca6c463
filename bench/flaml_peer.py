"""An AutoML peer for the champion, on exactly the champion's training fold (evaluation only).

    .venv/bin/pip install 'flaml[automl]>=2.3,<3'     # optional: not a dependency of the platform
    .venv/bin/python bench/flaml_peer.py --home .toda --budget 600

The champion's fold travels in its registered metadata (``fold``: train years, held-out years,
test year, strategy). FLAML's AutoML gets the same training rows and the same held-out slice
(``X_val``: the champion's early-stopping and calibration slice), the LightGBM learner only and
average precision as its metric, for ``--budget`` seconds. Both are then scored on the test
year's headline list (the first as-of date in November) and compared side by side: PR-AUC,
R-precision, recall in the top 1 % / 2 %, precision in the top 5 % and each school's top 3,
ROC-AUC, each with the FLAML − champion difference and its 95 % bootstrap interval over pupils
(``ml.ablation.bootstrap_table``). The search (FLAML's best configuration and its figures) is
logged as a run of the MLflow experiment ``futoukou_risk_peers``; the result is written to
``$TODA_HOME/reports/flaml_peer.json`` and the peer's scores on the test list (pseudonymous pupil
ids, in the list's row order) to ``flaml_peer_scores.parquet``, so that ``tune_champion.py`` can
put a tuned champion beside the peer on the same pupils.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

METRICS = ("pr_auc", "r_precision", "recall_top1", "recall_top2", "precision_top",
           "precision_school", "roc_auc")
EXPERIMENT = "futoukou_risk_peers"
PEER_SCORES = "flaml_peer_scores.parquet"


def champion_fold(meta: dict):
    from ml import evaluation as E

    f = meta["fold"]
    return E.Fold(int(f["test_year"]), tuple(f["valid_years"]), tuple(f["train_years"]), f["strategy"])


def load_champion_fold(home=None, log=print):
    """(paths, version, booster, meta, features, train, valid, test list) of the champion's fold:
    the rows it was trained and early-stopped on, and its test year's headline list."""
    import duckdb

    from ml import evaluation as E
    from ml.dataset import load_frame
    from ml.tracking import CHAMPION, Tracker, tracking_uri
    from toda_platform.settings import Paths

    paths = Paths.from_env(home)
    loaded = Tracker(tracking_uri(paths.mlflow_db), paths.mlflow_artifacts.as_uri()).load_alias(CHAMPION)
    if loaded is None:
        raise SystemExit("no champion in this home's registry: materialise models/futoukou_risk first")
    version, booster, meta = loaded
    fold, feats = champion_fold(meta), list(meta["features"])
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        frame = load_frame(con, labelled_only=True, features=feats)
    finally:
        con.close()
    train, valid, test = E.split(frame, fold)
    d = E.headline_date(test.as_of_date)
    test = test[test.as_of_date == d]
    log(f"champion v{version}, fold {fold.to_dict()}: train {len(train):,} rows, held out "
        f"{len(valid):,}, test list {d.date()} {len(test):,} pupils, {int(test.label.sum())} cases")
    return paths, version, booster, meta, fold, feats, train, valid, test


def run(home: str | os.PathLike | None = None, budget: float = 600, n_boot: int = 500, seed: int = 0,
        log=print) -> dict:
    import numpy as np
    import pandas as pd
    from flaml import AutoML

    from ml.ablation import bootstrap_table
    from ml.dataset import feature_matrix
    from ml.pipeline import score_with
    from ml.tracking import Tracker, tracking_uri

    paths, version, booster, meta, fold, feats, train, valid, test = load_champion_fold(home, log)
    d = test.as_of_date.iloc[0]

    def X(f):
        return pd.DataFrame(feature_matrix(f, feats), columns=feats)

    automl = AutoML()
    started = time.perf_counter()
    automl.fit(X(train), train.label.to_numpy(dtype=int), X_val=X(valid), y_val=valid.label.to_numpy(dtype=int),
               task="classification", metric="ap", estimator_list=["lgbm"], time_budget=budget,
               eval_method="holdout", n_jobs=2, seed=seed, verbose=0)
    seconds = time.perf_counter() - started
    best_config = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in automl.best_config.items()}
    _, champion = score_with(booster, meta, test)
    peer = automl.predict_proba(X(test))[:, 1]
    y = test.label.to_numpy(dtype=float)
    table = bootstrap_table(y, test.school_code.to_numpy(), {"champion": champion, "flaml": peer},
                            "champion", n_boot=n_boot, seed=seed, metrics=METRICS)
    result = {
        "champion_version": version, "fold": fold.to_dict(), "as_of_date": str(d.date()),
        "pupils": int(len(test)), "cases": int(y.sum()), "budget_seconds": budget,
        "search_seconds": round(seconds, 1), "flaml_best_config": best_config,
        "flaml_best_iteration_estimator": automl.best_estimator,
        "comparison": table.to_dict("records"),
    }
    tracker = Tracker(tracking_uri(paths.mlflow_db), paths.mlflow_artifacts.as_uri(), EXPERIMENT)
    with tracker.run(f"flaml_peer_{fold.test_year}", tags={"kind": "automl_peer",
                                                           "champion_version": str(version)}):
        tracker.log_params({"budget_seconds": budget, "metric": "ap", "learner": "lgbm",
                            **{f"fold_{k}": v for k, v in fold.to_dict().items()},
                            **{f"best_{k}": v for k, v in best_config.items()}})
        log_comparison(tracker, table, "flaml")
    out = paths.reports / "flaml_peer.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"pupil_id": test.pupil_id.to_numpy(), "score": peer}).to_parquet(paths.reports / PEER_SCORES)
    out.write_text(json.dumps(result, indent=2, default=lambda o: o.item() if isinstance(o, np.generic) else str(o)),
                   encoding="utf-8")
    result["written_to"] = str(out)
    return result


def load_peer_scores(paths, test):
    """The FLAML peer's scores on ``test`` (the same list, row for row), or None if the peer
    has not been run in this home or was run on another list."""
    import pandas as pd

    f = paths.reports / PEER_SCORES
    if not f.exists():
        return None
    peer = pd.read_parquet(f)
    if len(peer) != len(test) or (peer.pupil_id.to_numpy() != test.pupil_id.to_numpy()).any():
        return None
    return peer.score.to_numpy(dtype=float)


def log_comparison(tracker, table, variant: str) -> None:
    """The variant's figures and its differences from the champion (with intervals), in the
    active MLflow run, and the whole table as an artifact."""
    rows = table[table.variant == variant]
    tracker.log_metrics({r.metric: r.value for r in rows.itertuples()})
    for suffix, col in (("", "delta"), ("_low", "delta_low"), ("_high", "delta_high")):
        tracker.log_metrics({f"delta_{r.metric}{suffix}": getattr(r, col) for r in rows.itertuples()})
    tracker.log_table(table, f"comparison/{variant}_vs_champion.csv")


def print_comparison(r: dict, variant: str, reference: str = "champion", key: str = "comparison") -> None:
    print(f"{'metric':18s}{reference:>9s}{variant:>9s}{f'{variant} − {reference} (95 % interval)':>36s}")
    rows = {(x["variant"], x["metric"]): x for x in r[key]}
    for m in METRICS:
        c, v = rows[(reference, m)], rows[(variant, m)]
        print(f"{m:18s}{c['value']:9.3f}{v['value']:9.3f}"
              f"{v['delta']:+14.3f} ({v['delta_low']:+.3f} to {v['delta_high']:+.3f})")
    print(f"written to {r['written_to']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", default=os.environ.get("TODA_HOME", ".toda"))
    parser.add_argument("--budget", type=float, default=600, help="FLAML's search, seconds")
    parser.add_argument("--n-boot", type=int, default=500)
    args = parser.parse_args()
    r = run(args.home, args.budget, args.n_boot)
    print(f"list {r['as_of_date']}: {r['pupils']:,} pupils, {r['cases']} cases; FLAML searched "
          f"{r['search_seconds']:.0f} s, best {r['flaml_best_config']}")
    print_comparison(r, "flaml")


if __name__ == "__main__":
    main()
