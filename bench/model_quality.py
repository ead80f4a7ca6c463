"""How close does the champion get to the best possible ranking? (evaluation only)

    .venv/bin/python bench/model_quality.py [--home .toda]

This is the ONLY code that reads ``$TODA_HOME/truth``: the synthetic city's hidden truth, which
training and scoring never see (``tests/test_ml_assets.py`` proves that deleting the truth folder
changes no score). For the cohort of the newest risk list (``outputs.risk_scores``, the
``latest`` as-of date of the current school year) it joins, through the pupil pseudonym, the
generator's record of that year: ``futoukou`` (whether the pupil ends up counted 不登校 — the
outcome) and ``p_futoukou`` (the true probability — the oracle's score). It reports ROC-AUC and
precision in the top 5 % for

* the champion (the published ``score``),
* the rule baseline (the city's earlier logic on the same rows), and
* the oracle (``p_futoukou``),

and the ratios champion/oracle and champion/baseline; then the same three at every as-of date of
the current year (the champion loaded through the registry and scored on the fly). Writes
``$TODA_HOME/reports/model_quality.json`` and prints a table.

Note on the oracle: ``p_futoukou`` is the probability drawn at the start of the school year
from the pupil's latent risk. By November the year's own absences already show who has begun
to drift, which the oracle does not use; a model scoring in November can therefore rank better
than this "oracle" (a ratio above 1 is not an error).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def published_list_vs_truth(paths) -> tuple[dict, "pd.DataFrame", int, bytes]:
    """The newest published list (``outputs.risk_scores``) against the truth of its school year,
    beside the rule baseline (the count of absences) and the oracle on the same pupils:
    (figures, the year's truth with pupil pseudonyms, the year, the city's key)."""
    import duckdb
    import pandas as pd

    from ml import metrics as M
    from ml.dataset import load_frame
    from ml.models import RuleBaseline
    from toda_platform.pseudonym import load_key, pseudonymise

    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        latest = con.execute("SELECT max(as_of_date) FROM outputs.risk_scores").fetchone()[0]
        if latest is None:
            raise SystemExit("outputs.risk_scores is empty: materialise outputs/risk_scores first")
        scores = con.execute("SELECT pupil_id, score, model_version FROM outputs.risk_scores "
                             "WHERE as_of_date = ?", [latest]).df()
        frame = load_frame(con, kinds=("latest",), as_of_dates=[latest],
                           features=RuleBaseline().features)
    finally:
        con.close()
    year = int(frame.school_year.iloc[0])
    truth = pd.read_csv(paths.truth / "pupil_years.csv", dtype={"student_number": str})
    truth = truth[truth.school_year == year]
    key = load_key(paths.pseudonym_key_file)
    truth["pupil_id"] = [pseudonymise(key, n) for n in truth.student_number]
    rows = frame.merge(scores, on="pupil_id").merge(
        truth[["pupil_id", "futoukou", "p_futoukou"]], on="pupil_id", how="left")
    missing = int(rows.futoukou.isna().sum())
    rows = rows[rows.futoukou.notna()]
    y = rows.futoukou.to_numpy(dtype=float)
    candidates = {
        "champion": rows.score.to_numpy(dtype=float),
        "rule_baseline": RuleBaseline().raw(rows),
        "oracle": rows.p_futoukou.to_numpy(dtype=float),
    }
    result = {"as_of_date": str(latest), "school_year": year, "pupils": int(len(rows)),
              "positives": int(y.sum()), "pupils_without_truth": missing,
              "model_version": str(scores.model_version.iloc[0])}
    for name, s in candidates.items():
        result[name] = {"roc_auc": M.roc_auc(y, s), "precision_top5": M.at_fraction(y, s, 0.05)["precision"]}
    for m in ("roc_auc", "precision_top5"):
        c = result["champion"][m]
        result[f"champion_over_oracle_{m}"] = c / result["oracle"][m] if result["oracle"][m] else float("nan")
        result[f"champion_over_baseline_{m}"] = c / result["rule_baseline"][m] \
            if result["rule_baseline"][m] else float("nan")
    return result, truth, year, key


def evaluate(home: str | os.PathLike | None = None) -> dict:
    from toda_platform.settings import Paths

    paths = Paths.from_env(home)
    result, truth, year, key = published_list_vs_truth(paths)
    result["by_as_of_date"] = _by_as_of_date(paths, truth[["pupil_id", "futoukou", "p_futoukou"]], year)
    result["headline_with_oracle"] = _headline_with_oracle(paths, key)
    out = paths.reports / "model_quality.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    result["written_to"] = str(out)
    return result


def _by_as_of_date(paths, truth, year: int) -> list[dict]:
    """The same comparison at every as-of date of the current year, the champion scored on the
    fly through the registry: how the gap to the oracle closes as the year's data arrive."""
    import duckdb

    from ml import metrics as M
    from ml.dataset import load_frame
    from ml.models import RuleBaseline
    from ml.pipeline import score_with
    from ml.tracking import CHAMPION, Tracker, tracking_uri

    loaded = Tracker(tracking_uri(paths.mlflow_db), paths.mlflow_artifacts.as_uri()).load_alias(CHAMPION)
    if loaded is None:
        return []
    _, booster, meta = loaded
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        feats = list(dict.fromkeys(meta["features"] + RuleBaseline().features))
        frame = load_frame(con, years=[year], kinds=("month_start", "latest"), features=feats)
    finally:
        con.close()
    frame = frame.merge(truth, on="pupil_id", how="inner")
    rows = []
    for d, g in frame.groupby("as_of_date"):
        y = g.futoukou.to_numpy(dtype=float)
        raw, _ = score_with(booster, meta, g)
        row = {"as_of_date": str(pd_date(d)), "pupils": int(len(g)), "positives": int(y.sum())}
        for name, sc in (("champion", raw), ("rule_baseline", RuleBaseline().raw(g)),
                         ("oracle", g.p_futoukou.to_numpy(dtype=float))):
            row[f"{name}_roc_auc"] = M.roc_auc(y, sc)
            row[f"{name}_precision_top5"] = M.at_fraction(y, sc, 0.05)["precision"]
        rows.append(row)
    return rows


def _headline_with_oracle(paths, key: bytes) -> list[dict]:
    """``models.headline`` (the held-out test years' early-November rows, labelled by the
    long-absence survey) with an ``oracle`` row scored on exactly the same rows: the truth's
    start-of-year probability against the same labels."""
    import duckdb
    import pandas as pd

    from ml import evaluation as E
    from ml import metrics as M
    from ml.dataset import load_frame, table_exists
    from toda_platform.pseudonym import pseudonymise

    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        if not table_exists(con, "models.headline"):
            return []
        head = con.execute("SELECT * FROM models.headline ORDER BY test_year, subset, model").df()
        dates = sorted({pd.Timestamp(d).date() for d in head.as_of_date.dropna()})
        frame = load_frame(con, as_of_dates=dates, labelled_only=True, features=[])
    finally:
        con.close()
    truth = pd.read_csv(paths.truth / "pupil_years.csv", dtype={"student_number": str},
                        usecols=["student_number", "school_year", "p_futoukou"])
    truth = truth[truth.school_year.isin(set(head.test_year))]
    truth["pupil_id"] = [pseudonymise(key, n) for n in truth.student_number]
    frame = frame.merge(truth[["pupil_id", "school_year", "p_futoukou"]], on=["pupil_id", "school_year"])
    rows = head.reindex(columns=["test_year", "model", "subset", "as_of_date", "n", "positives",
                                 *HEADLINE_FIGURES]).to_dict("records")
    for (year, d), g in frame.groupby(["school_year", "as_of_date"]):
        for subset, part in (("all", g), ("new", g[~g.futoukou_prev_year.astype(bool)])):
            rows.append({"test_year": int(year), "model": "oracle", "subset": subset,
                         **_figures(part, part.p_futoukou.to_numpy(dtype=float))})
    rows += _truly_early(paths, key, head)
    out = pd.DataFrame(rows).sort_values(["test_year", "subset", "model"])
    out["as_of_date"] = out.as_of_date.map(lambda d: str(pd_date(d)))
    ints = ("test_year", "n", "positives")
    return [{k: (int(v) if k in ints else float(v) if isinstance(v, float) else v) for k, v in r.items()}
            for r in out.to_dict("records")]


HEADLINE_FIGURES = ["precision_top", "precision_school", "r_precision", "recall_top1", "recall_top2",
                    "roc_auc", "pr_auc"]


def _figures(part, score) -> dict:
    """The headline figures of one list (rows of one as-of date) ranked by ``score``."""
    import pandas as pd

    from ml import evaluation as E
    from ml import metrics as M

    y = part.label.to_numpy(dtype=float)
    m = M.ranking_metrics(y, score, groups=part.school_code.to_numpy(), fraction=E.FRACTION,
                          k_per_group=E.K_PER_SCHOOL)
    return {"as_of_date": pd.Timestamp(part.as_of_date.iloc[0]), "n": len(part),
            "positives": int(y.sum()), **{k: m[k] for k in HEADLINE_FIGURES}}


def _truly_early(paths, key: bytes, head) -> list[dict]:
    """Subset ``early`` of the latest held-out year's headline list: the cases whose
    non-attendance had not yet begun at the as-of date (the truth's ``onset_date`` after it),
    beside every pupil who did not become 不登校; the cases already absent are set aside, as a
    meeting would see them anyway. The champion (scored through the registry: it was not
    trained on this year), the rule baseline and the oracle on the same rows."""
    import duckdb
    import pandas as pd

    from ml.dataset import load_frame
    from ml.models import RuleBaseline
    from ml.pipeline import score_with
    from ml.tracking import CHAMPION, Tracker, tracking_uri
    from toda_platform.pseudonym import pseudonymise

    loaded = Tracker(tracking_uri(paths.mlflow_db), paths.mlflow_artifacts.as_uri()).load_alias(CHAMPION)
    if loaded is None or head.empty:
        return []
    _, booster, meta = loaded
    year = int(meta.get("test_year") or head.test_year.max())
    dates = sorted({pd.Timestamp(d).date() for d in head[head.test_year == year].as_of_date.dropna()})
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        feats = list(dict.fromkeys(meta["features"] + RuleBaseline().features))
        frame = load_frame(con, as_of_dates=dates, labelled_only=True, features=feats)
    finally:
        con.close()
    truth = pd.read_csv(paths.truth / "pupil_years.csv", dtype={"student_number": str})
    if "onset_date" not in truth:
        return []
    truth = truth[truth.school_year == year]
    truth["pupil_id"] = [pseudonymise(key, n) for n in truth.student_number]
    frame = frame.merge(truth[["pupil_id", "p_futoukou", "onset_date"]], on="pupil_id")
    onset = pd.to_datetime(frame.onset_date)
    begun = (frame.label == 1) & onset.notna() & (onset <= frame.as_of_date)
    rows = []
    for _, g in frame[~begun].groupby("as_of_date"):
        _, prob = score_with(booster, meta, g)
        for name, score in (("champion", prob), ("rule_baseline", RuleBaseline().raw(g)),
                            ("oracle", g.p_futoukou.to_numpy(dtype=float))):
            rows.append({"test_year": year, "model": name, "subset": "early", **_figures(g, score)})
    return rows


def pd_date(d):
    import pandas as pd

    return pd.Timestamp(d).date()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", default=os.environ.get("TODA_HOME", ".toda"))
    r = evaluate(parser.parse_args().home)
    print(f"as-of {r['as_of_date']} (school year {r['school_year']}), {r['pupils']} pupils in the "
          f"cohort, {r['positives']} become 不登校; champion = futoukou_risk v{r['model_version']}")
    print(f"{'':15s}{'ROC-AUC':>9s}{'prec@5%':>9s}")
    for name in ("champion", "rule_baseline", "oracle"):
        print(f"{name:15s}{r[name]['roc_auc']:9.3f}{r[name]['precision_top5']:9.3f}")
    print(f"champion/oracle:   AUC {r['champion_over_oracle_roc_auc']:.3f}, "
          f"prec@5% {r['champion_over_oracle_precision_top5']:.3f}")
    print(f"champion/baseline: AUC {r['champion_over_baseline_roc_auc']:.3f}, "
          f"prec@5% {r['champion_over_baseline_precision_top5']:.3f}")
    if r["by_as_of_date"]:
        print("by as-of date (champion scored through the registry)   ROC-AUC          prec@5%")
        print(f"{'as-of':12s}{'pupils':>7s}{'pos':>5s}  {'champ':>6s}{'base':>6s}{'oracle':>7s}"
              f"  {'champ':>6s}{'base':>6s}{'oracle':>7s}")
        for x in r["by_as_of_date"]:
            print(f"{x['as_of_date']:12s}{x['pupils']:7d}{x['positives']:5d}  "
                  f"{x['champion_roc_auc']:6.3f}{x['rule_baseline_roc_auc']:6.3f}{x['oracle_roc_auc']:7.3f}  "
                  f"{x['champion_precision_top5']:6.3f}{x['rule_baseline_precision_top5']:6.3f}"
                  f"{x['oracle_precision_top5']:7.3f}")
    if r["headline_with_oracle"]:
        print("\nheld-out years, early November (labels from the long-absence survey), with the oracle")
        print("subset early: the latest year's cases whose non-attendance had not begun at the "
              "as-of date (truth's onset after it), the cases already absent set aside")
        print(f"{'year':6s}{'subset':7s}{'model':15s}{'as-of':12s}{'pupils':>7s}{'pos':>5s}"
              f"{'p@5%':>7s}{'p@3/sch':>8s}{'R-prec':>7s}{'r@1%':>6s}{'r@2%':>6s}{'AUC':>7s}{'PR-AUC':>8s}")
        for x in r["headline_with_oracle"]:
            print(f"{int(x['test_year']):<6d}{x['subset']:7s}{x['model']:15s}{x['as_of_date']:12s}"
                  f"{int(x['n']):7d}{int(x['positives']):5d}{x['precision_top']:7.3f}{x['precision_school']:8.3f}"
                  f"{x['r_precision']:7.3f}{x['recall_top1']:6.3f}{x['recall_top2']:6.3f}"
                  f"{x['roc_auc']:7.3f}{x['pr_auc']:8.3f}")
    print(f"written to {r['written_to']}")


if __name__ == "__main__":
    main()
