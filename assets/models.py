"""Models (group ``models``) and risk scores (group ``scoring``).

``models/futoukou_risk``   temporal evaluation of the rule baseline, logistic regression and
                           LightGBM; every run in MLflow; the latest fold's LightGBM registered
                           and moved to ``champion`` or ``challenger`` by the promotion gate
``models/source_ablation`` leave-one-source-out and single-source runs with bootstrap intervals
``models/fairness_audit``  flag rate, precision, recall, FPR by sex, grade, school, context band
``scoring/feature_drift``  Evidently drift of the champion's top features, this as-of date
                           against the same point of last year; its blocking check stops the
                           publication of a new risk list (the last published list stays)
``outputs/risk_scores``    the cohort at the latest as-of date, scored by the version behind
                           ``champion`` (loaded through the registry), with bands and reasons
``outputs/known_cases``    pupils already meeting the definition: listed apart, never scored

The heavy lifting is in :mod:`ml.pipeline`, :mod:`ml.ablation`, :mod:`ml.fairness`; these
assets read the marts with SQL, call those functions and write small result tables to the
warehouse (schemas ``models`` and ``outputs``).
"""


import hashlib
import json

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from assets.marts import FEATURES_KEY, LABELS_KEY
from assets.metadata import date_text, json_value, md_table, number, text
from assets.sources import staging_key
from ml.inputs import code_fingerprint
from resources.mlflow import MlflowTracking
from resources.toda import TodaHome

MODEL_KEY = dg.AssetKey(["models", "futoukou_risk"])
ABLATION_KEY = dg.AssetKey(["models", "source_ablation"])
FAIRNESS_KEY = dg.AssetKey(["models", "fairness_audit"])
RISK_SCORES_KEY = dg.AssetKey(["outputs", "risk_scores"])
KNOWN_CASES_KEY = dg.AssetKey(["outputs", "known_cases"])
DRIFT_KEY = dg.AssetKey(["scoring", "feature_drift"])


class TrainingConfig(dg.Config):
    n_test_years: int = 2
    lgb_rounds: int = 600
    early_stopping: int = 50
    lead_draws: int = 20
    force: bool = False  # retrain even when the labelled rows, config and code are unchanged


class AblationRunConfig(dg.Config):
    train_months: list[int] = [11]  # the headline month: see ml/ablation.py
    lgb_rounds: int = 600
    early_stopping: int = 30
    n_boot: int = 200
    refits: int = 3  # refits of the full model on resampled pupils: the noise floor
    force: bool = False  # rerun even when the labelled rows, config and code are unchanged
    groups: list[str] = []  # default: every source group


class DriftConfig(dg.Config):
    top_features: int = 30  # the champion's features by gain that are compared
    drift_share_limit: float = 0.3  # the check fails above this share of importance drifted
    null_jump: float = 0.2  # a change in the share of missing values that counts as drift
    # After reading the report: features whose drift is understood (a changed export, a new
    # survey round) and accepted for the rest of the school year, with the reason. Recorded in
    # quality.drift_acceptances; they no longer count toward the share.
    accept_features: list[str] = []
    accept_reason: str = ""


def _write(con, table: str, frame: pd.DataFrame) -> None:
    """Replace a small result table with ``frame`` (whole-table results, rebuilt each run)."""
    schema = table.split(".")[0]
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    con.register("_result", frame)
    try:
        con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM _result")
    finally:
        con.unregister("_result")


def _replace_as_of(con, table: str, ddl: str, frame: pd.DataFrame, as_of_date) -> None:
    """Replace one as-of date's rows of a kept-per-date list (delete-then-insert, one
    transaction): the list of each day stays the record of what was shown that day."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {table.split('.')[0]}")
    con.execute(ddl)
    con.register("_rows", frame)
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute(f"DELETE FROM {table} WHERE as_of_date = ?", [as_of_date])
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _rows")
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("_rows")


def _labelled_frame(warehouse: DuckDBResource) -> tuple[list[str], pd.DataFrame]:
    """Every model feature of the warehouse, and the cohort rows whose label is known (none
    before the features mart exists)."""
    from ml.dataset import FEATURES_TABLE, load_frame, model_feature_columns, table_exists

    with warehouse.get_connection() as con:
        if not table_exists(con, FEATURES_TABLE):
            return [], pd.DataFrame({"school_year": pd.Series(dtype=int), "label": pd.Series(dtype=float)})
        features = model_feature_columns(con)
        return features, load_frame(con, labelled_only=True, features=features)


STATUS_DDL = """CREATE SCHEMA IF NOT EXISTS models;
CREATE TABLE IF NOT EXISTS models.status (asset VARCHAR PRIMARY KEY, status VARCHAR,
                                          recorded_at TIMESTAMP)"""


def _record_status(warehouse: DuckDBResource, asset: str, status: str | None) -> None:
    """What a model asset could not do and why (read by the demo summary); cleared when it
    ran in full."""
    with warehouse.get_connection() as con:
        con.execute(STATUS_DDL)
        con.execute("DELETE FROM models.status WHERE asset = ?", [asset])
        if status:
            con.execute("INSERT INTO models.status VALUES (?, ?, ?)",
                        [asset, status, pd.Timestamp.now(tz="Asia/Tokyo").tz_localize(None)])


def _not_done(context, warehouse: DuckDBResource, asset: str, status: str) -> dg.MaterializeResult:
    """The result of a model asset that cannot run on this city's data: recorded, logged as a
    warning and shown as the materialisation's status — not a failure of the run."""
    context.log.warning(f"{asset}: {status}")
    _record_status(warehouse, asset, status)
    return dg.MaterializeResult(metadata={"status": text(status), "done": False})


INPUT_KEYS_DDL = """CREATE SCHEMA IF NOT EXISTS models;
CREATE TABLE IF NOT EXISTS models.input_keys (asset VARCHAR, input_key VARCHAR,
                                              computed_at TIMESTAMP, note VARCHAR)"""


def _input_key(frame: pd.DataFrame, features: list[str], config: dg.Config) -> str:
    """What a model asset's result depends on: the labelled rows and their features, the
    asset's config (without ``force``) and the code of ``ml/``. Labels change once a year (the
    long-absence survey), so most nightly runs find this unchanged."""
    from ml.dataset import fingerprint

    h = hashlib.sha256(fingerprint(frame, features)["sha256"].encode())
    h.update(json.dumps({k: v for k, v in config.model_dump().items() if k != "force"},
                        sort_keys=True).encode())
    h.update(code_fingerprint().encode())
    return h.hexdigest()


def _computed_at(con, asset: str, key: str):
    """When this asset last computed from exactly these inputs (None: never)."""
    con.execute(INPUT_KEYS_DDL)
    row = con.execute("SELECT max(computed_at) FROM models.input_keys WHERE asset = ? AND input_key = ?",
                      [asset, key]).fetchone()
    return row[0] if row else None


def _remember(con, asset: str, key: str, note: str = "") -> None:
    con.execute(INPUT_KEYS_DDL)
    con.execute("INSERT INTO models.input_keys VALUES (?, ?, ?, ?)",
                [asset, key, pd.Timestamp.now(tz="Asia/Tokyo").tz_localize(None), note])


def _unchanged_result(asset: str, since, key: str) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={
        "unchanged_since": date_text(since), "input_key": key[:16],
        "note": f"{asset}: same labelled rows, features, config and ml/ code as the run of "
                f"{since}; its tables and MLflow runs stand (config force=true reruns)"})


def _calendar(con) -> list:
    return [r[0] for r in con.execute(
        "SELECT DISTINCT date FROM staging.attendance_daily ORDER BY date").fetchall()]


def _share(context, mlflow: MlflowTracking) -> None:
    """In a deployment, the champion goes to the shared registry for cities too young for one."""
    version = mlflow.share_champion()
    if version:
        context.log.info(f"champion v{version} shared with the deployment's young cities")


_md = md_table  # tables in metadata: rounded numbers, dates as dates, shown whole


HEADLINE_COLUMNS = ["test_year", "model", "subset", "as_of_date", "n", "positives",
                    "precision_top", "recall_top", "precision_school", "recall_school",
                    "r_precision", "recall_top1", "recall_top2", "pr_auc", "roc_auc",
                    "brier", "ece", "lead_median", "lead_mean", "lead_share_listed"]


@dg.asset(
    key=MODEL_KEY,
    group_name="models",
    kinds={"lightgbm", "mlflow", "duckdb"},
    deps=[FEATURES_KEY, LABELS_KEY, staging_key("attendance_daily")],
    description="Temporal evaluation (for each of the last two completed school years: train on "
                "earlier years, early-stop and calibrate on the year before, test on the year) of "
                "the rule baseline, logistic regression and LightGBM; one MLflow run per model and "
                "fold; the latest fold's LightGBM registered as a new version of futoukou_risk and "
                "made champion only if it beats the current champion (or, without one, the rule "
                "baseline) on the mean PR-AUC over the year's as-of dates without worse "
                "calibration. Tables "
                "models.evaluation_metrics (per as-of date) and models.headline.",
)
def futoukou_risk(context: dg.AssetExecutionContext, config: TrainingConfig,
                  warehouse: DuckDBResource, mlflow: MlflowTracking) -> dg.MaterializeResult:
    from ml.pipeline import TrainConfig, train_and_register
    from ml.tracking import CHALLENGER, CHAMPION

    from ml import evaluation as E

    features, frame = _labelled_frame(warehouse)
    shortfall = E.history_shortfall(E.completed_years(frame))
    if shortfall:
        until = ("the risk list uses another city's shared champion until then" if mlflow.deployment
                 else "no risk list until then")
        return _not_done(context, warehouse, "futoukou_risk", f"not trained: {shortfall}; {until}")
    key = _input_key(frame, features, config)
    tracker = mlflow.tracker()
    registered = tracker.version_by_alias(CHAMPION) or tracker.version_by_alias(CHALLENGER)
    with warehouse.get_connection() as con:
        since = None if config.force or registered is None else _computed_at(con, "futoukou_risk", key)
        calendar = _calendar(con)
    if since is not None:
        context.log.info(f"inputs unchanged since {since}: no retraining")
        _share(context, mlflow)
        return _unchanged_result("futoukou_risk", since, key)
    context.log.info(f"{len(frame)} labelled cohort rows, {len(features)} features")
    summary = train_and_register(
        frame, features, tracker, calendar,
        TrainConfig(n_test_years=config.n_test_years, lgb_rounds=config.lgb_rounds,
                    early_stopping=config.early_stopping, lead_draws=config.lead_draws),
        log=context.log.info)
    headline = summary.headline.reindex(columns=HEADLINE_COLUMNS)
    with warehouse.get_connection() as con:
        _write(con, "models.evaluation_metrics", summary.per_date)
        _write(con, "models.headline", headline)
        if summary.bands is not None:
            _write(con, "models.band_thresholds", summary.bands)
        _remember(con, "futoukou_risk", key, f"version {summary.version}")
    _record_status(warehouse, "futoukou_risk", None)
    _share(context, mlflow)
    d = summary.decision
    return dg.MaterializeResult(metadata={
        "headline": _md(headline[headline.subset == "all"].drop(columns="subset")),
        "headline_new_cases": _md(headline[headline.subset == "new"].drop(columns="subset")),
        "folds": json_value([f.to_dict() for f in summary.folds]),
        "registered_version": summary.version or "",
        "gate_decision": d.alias if d else f"unchanged: same training as v{summary.unchanged_version}",
        "gate_reason": text(d.reason) if d else text("no new version registered (no new labels, features "
                                          "or parameters since that version)"),
        "bands": _md(summary.bands) if summary.bands is not None else "",
        "top_features_by_gain": _md(summary.importance.head(15)) if summary.importance is not None else "",
        "mlflow_ui": mlflow.ui_command(),
        "training_rows": len(frame),
    })


@dg.asset(
    key=ABLATION_KEY,
    group_name="models",
    kinds={"lightgbm", "mlflow", "duckdb"},
    deps=[MODEL_KEY],
    description="Which data the model needs: LightGBM without each source group "
                "(leave-one-out) and with each group alone (single source), scored on the "
                "latest completed year's headline as-of date, with 95% bootstrap intervals over "
                "pupils for the change against the full model. Nested MLflow runs under "
                "source_ablation_<year>; table models.source_ablation.",
)
def source_ablation(context: dg.AssetExecutionContext, config: AblationRunConfig,
                    warehouse: DuckDBResource, mlflow: MlflowTracking) -> dg.MaterializeResult:
    from ml import evaluation as E
    from ml.ablation import AblationConfig, run_ablation

    features, frame = _labelled_frame(warehouse)
    shortfall = E.history_shortfall(E.completed_years(frame))
    if shortfall:
        return _not_done(context, warehouse, "source_ablation", f"not run: {shortfall}")
    key = _input_key(frame, features, config)
    with warehouse.get_connection() as con:
        since = None if config.force else _computed_at(con, "source_ablation", key)
    if since is not None:
        context.log.info(f"inputs unchanged since {since}: the ablation stands")
        return _unchanged_result("source_ablation", since, key)
    fold = E.production_fold(E.completed_years(frame))
    tracker = mlflow.tracker()
    cfg = AblationConfig(train_months=tuple(config.train_months) or None, lgb_rounds=config.lgb_rounds,
                         early_stopping=config.early_stopping, n_boot=config.n_boot,
                         groups=tuple(config.groups) or None, refits=config.refits)
    with tracker.run(f"source_ablation_{fold.test_year}",
                     tags={"kind": "source_ablation", "test_year": str(fold.test_year)}):
        tracker.log_params({"train_months": list(config.train_months), "n_boot": config.n_boot,
                            "groups": list(config.groups) or "all",
                            "lgb_rounds": config.lgb_rounds, **{f"fold_{k}": v for k, v in fold.to_dict().items()}})
        fitted = {}

        def remember(name, kind, group, feats, model):
            fitted[name] = (kind, group, len(feats), int(model.train_params.get("best_iteration", 0)))

        result = run_ablation(frame, fold, features, cfg, log=context.log.info, on_variant=remember)
        for name, (kind, group, n, best) in fitted.items():
            with tracker.run(name, nested=True, tags={"kind": kind, "group": group}):
                tracker.log_params({"kind": kind, "group": group, "n_features": n, "best_iteration": best})
                rows = result.table[result.table.variant == name]
                tracker.log_metrics({f"{r.metric}": r.value for r in rows.itertuples()})
                tracker.log_metrics({f"delta_{r.metric}": r.delta for r in rows.itertuples()})
                tracker.log_metrics({f"delta_{r.metric}_low": r.delta_low for r in rows.itertuples()})
                tracker.log_metrics({f"delta_{r.metric}_high": r.delta_high for r in rows.itertuples()})
        table = result.table.merge(result.variants, on="variant")
        tracker.log_table(table, "ablation/source_ablation.csv")
        tracker.log_metrics({f"refit_sd_{m}": v for m, v in result.refit_sd.items()})
    with warehouse.get_connection() as con:
        _write(con, "models.source_ablation", table.assign(test_year=fold.test_year,
                                                           as_of_date=result.as_of_date))
        _remember(con, "source_ablation", key)
    _record_status(warehouse, "source_ablation", None)
    pr = result.wide("pr_auc")
    return dg.MaterializeResult(metadata={
        "as_of_date": date_text(result.as_of_date),
        "test_year": fold.test_year,
        "pr_auc_by_variant": _md(pr),
        "precision_top3_per_school": _md(result.wide("precision_school")),
        "sources_needed": json_value(result.needed("pr_auc")),
        "refit_noise_sd": json_value(result.refit_sd, digits=4),
    })


@dg.asset(
    key=FAIRNESS_KEY,
    group_name="models",
    kinds={"mlflow", "duckdb"},
    deps=[MODEL_KEY],
    description="Fairness audit of the champion on the latest completed year's headline as-of "
                "date: flag rate, precision, recall and false-positive rate of the top-5% list by "
                "sex, grade, school and school-context band, divided by the largest group's; "
                "ratios outside 0.8–1.25 flagged. Table models.fairness_audit.",
)
def fairness_audit(context: dg.AssetExecutionContext, warehouse: DuckDBResource,
                   mlflow: MlflowTracking) -> dg.MaterializeResult:
    from ml import evaluation as E
    from ml.dataset import load_frame
    from ml.fairness import audit, flagged
    from ml.pipeline import score_with
    from ml.tracking import CHALLENGER, CHAMPION

    tracker = mlflow.tracker()
    loaded, alias = tracker.load_alias(CHAMPION), CHAMPION
    if loaded is None:
        loaded, alias = tracker.load_alias(CHALLENGER), CHALLENGER
    if loaded is None:
        return _not_done(context, warehouse, "fairness_audit",
                         "not run: no registered version of futoukou_risk to audit "
                         "(see models/futoukou_risk)")
    version, booster, meta = loaded
    with warehouse.get_connection() as con:
        frame = load_frame(con, labelled_only=True, features=meta["features"] +
                           [c for c in ("reg_female", "ctx_school_aid_rate") if c not in meta["features"]])
    year = max(E.completed_years(frame))
    test = frame[frame.school_year == year]
    d = E.headline_date(test.as_of_date)
    test = test[test.as_of_date == d]
    raw, _ = score_with(booster, meta, test)
    table = audit(test, raw).assign(model_version=version, alias=alias, as_of_date=d)
    out = flagged(table)
    with tracker.run(f"fairness_{year}", tags={"kind": "fairness_audit", "model_version": version}):
        tracker.log_params({"model_version": version, "alias": alias, "as_of_date": str(d.date())})
        tracker.log_table(table, "fairness/fairness_audit.csv")
        tracker.log_metrics({"groups_outside_band": len(out)})
    with warehouse.get_connection() as con:
        _write(con, "models.fairness_audit", table)
    _record_status(warehouse, "fairness_audit", None)
    cols = ["attribute", "group", "n", "positives", "flag_rate", "precision", "recall", "fpr",
            "flag_rate_ratio", "precision_ratio", "recall_ratio", "fpr_ratio", "outside_band"]
    return dg.MaterializeResult(metadata={
        "model_version": f"{version} ({alias})",
        "as_of_date": date_text(d),
        "outside_band": _md(out[cols]) if len(out) else "none",
        "by_sex_and_context": _md(table[table.attribute.isin(["sex", "context_band"])][cols]),
        "groups_outside_band": len(out),
    })


@dg.asset(
    key=RISK_SCORES_KEY,
    group_name="scoring",
    kinds={"duckdb", "mlflow"},
    deps=[MODEL_KEY, FEATURES_KEY, LABELS_KEY, DRIFT_KEY],
    description="The cohort at the latest as-of date scored by the futoukou_risk version behind "
                "the champion alias (loaded through the MLflow registry): calibrated score, band "
                "(赤/ピンク/橙/黄, thresholds from held-out precision), rank in school, up to five "
                "reasons in Japanese from LightGBM contributions, model version. One list per "
                "as-of date is kept (delete-then-insert of that date). Known cases are in "
                "outputs.known_cases, not here.",
    metadata={"dagster/table_name": "outputs.risk_scores"},
)
def risk_scores(context: dg.AssetExecutionContext, warehouse: DuckDBResource,
                mlflow: MlflowTracking) -> dg.MaterializeResult:
    from ml.dataset import load_frame
    from ml.pipeline import score_cohort
    from ml.scoring import RISK_SCORES_DDL
    from quality import drift

    tracker = mlflow.tracker()
    loaded = mlflow.champion()
    if loaded is None:
        return _not_done(context, warehouse, "risk_scores",
                         "no risk list published: no version of futoukou_risk is champion "
                         "(none trained yet, or none has passed the promotion gate)")
    version, booster, meta = loaded
    with warehouse.get_connection() as con:
        latest = con.execute("SELECT max(as_of_date) FROM marts.pupil_features "
                             "WHERE as_of_kind = 'latest'").fetchone()[0]
        waiting = _year_without_attendance(con, latest)
    if waiting:
        return _not_done(context, warehouse, "risk_scores", waiting)
    with warehouse.get_connection() as con:
        # the gate holds even when this asset is materialised alone, without the check in the run
        refusal = None if latest is None else drift.publication_refused(drift.latest_run(con), latest, version)
        frame = None if latest is None or refusal else load_frame(
            con, kinds=("latest",), as_of_dates=[latest], features=meta["features"])
    # raised outside the connection's block: dagster-duckdb does not close it on an exception
    if latest is None:
        raise dg.Failure("marts.pupil_features has no 'latest' as-of date to score")
    if refusal:
        raise dg.Failure(f"risk list of {pd.Timestamp(latest).date()} not published: {refusal}")
    model_name = meta.get("model_name", tracker.model_name)
    scores = score_cohort(frame, booster, meta, model_name=model_name, version=version,
                          scored_at=pd.Timestamp.now(tz="Asia/Tokyo").tz_localize(None))
    with warehouse.get_connection() as con:
        _replace_as_of(con, "outputs.risk_scores", RISK_SCORES_DDL, scores, latest)
    _record_status(warehouse, "risk_scores", None)
    preview = scores.sort_values("score", ascending=False).head(8)[
        ["school_code", "grade", "score", "band", "rank_in_school", "reason_1", "reason_2"]]
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(scores),
        "as_of_date": date_text(latest),
        "model_version": _champion_text(model_name, version, meta),
        "bands": md_table(band_summary(scores, meta.get("band_thresholds", {}))),
        "preview": md_table(preview),
    })


def _champion_text(model_name: str, version: str, meta: dict) -> str:
    lender = meta.get("borrowed_from")
    return f"{model_name} {version} (borrowed: the champion of {lender})" if lender else \
        f"{model_name} v{version} (champion)"


def _year_without_attendance(con, latest) -> str | None:
    """When the registry already holds a school year later than the newest as-of date's (a new
    year has begun, its attendance not yet landed), what is missing in words; else None."""
    from ml.asof import school_year_of
    from ml.dataset import table_exists

    if latest is None or not table_exists(con, "staging.pupil_registry"):
        return None
    current = con.execute("SELECT max(school_year) FROM staging.pupil_registry").fetchone()[0]
    year = school_year_of(pd.Timestamp(latest).date())
    if current is None or int(current) <= year:
        return None
    return (f"no risk list for school year {current}: it has no attendance yet (the newest "
            f"as-of date, {date_text(latest)}, belongs to {year}); the first list follows its "
            f"first attendance file")


def band_summary(scores: pd.DataFrame, thresholds: dict) -> pd.DataFrame:
    """Bands in severity order (then no band): threshold, target precision, pupils listed."""
    from ml.scoring import BANDS

    counts = scores.band.fillna("なし").value_counts()
    rows = [{"band": b, "threshold": thresholds.get(b), "target_precision": target,
             "pupils": int(counts.get(b, 0))} for b, target in BANDS]
    rows.append({"band": "なし", "threshold": None, "target_precision": None,
                 "pupils": int(counts.get("なし", 0))})
    return pd.DataFrame(rows)


def _list_check(name: str, description: str):
    """A blocking check of the newest risk list (quality/risk_list.py holds the logic)."""

    @dg.asset_check(asset=RISK_SCORES_KEY, name=name, blocking=True, description=description)
    def _check(warehouse: DuckDBResource) -> dg.AssetCheckResult:
        from quality.risk_list import run_check

        with warehouse.get_connection() as con:
            r = run_check(con, name)
        meta = {k: (md_table(pd.DataFrame(v)) if isinstance(v, list) and v and isinstance(v[0], dict)
                    else date_text(v) if k == "as_of_date" else json_value(v) if isinstance(v, list)
                    else number(v) if isinstance(v, float) else v)
                for k, v in r.metadata.items()}
        return dg.AssetCheckResult(passed=r.passed, severity=dg.AssetCheckSeverity.ERROR,
                                   description=r.description, metadata=meta)

    return _check


risk_list_checks = [
    _list_check("scores_within_0_1", "Every score of the newest list is a probability (finite, 0–1)."),
    _list_check("bands_in_severity_order",
                "Bands follow the scores in severity order 赤 > ピンク > 橙 > 黄 > none: every pupil "
                "of a band scores at least as high as every pupil of a less severe band."),
    _list_check("one_row_per_pupil", "One row per pupil in the newest list."),
    _list_check("every_cohort_pupil_scored",
                "Every cohort pupil of the list's as-of date (marts.labels in_cohort, with "
                "features) is scored, and nobody else (known cases are listed apart)."),
]


@dg.asset(
    key=KNOWN_CASES_KEY,
    group_name="scoring",
    kinds={"duckdb"},
    deps=[LABELS_KEY],
    description="Pupils who already meet the 不登校 definition this school year at the latest "
                "as-of date (30+ non-illness absent days): listed apart for the case meetings, "
                "never scored.",
    metadata={"dagster/table_name": "outputs.known_cases"},
)
def known_cases(warehouse: DuckDBResource) -> dg.MaterializeResult:
    from ml.scoring import KNOWN_CASES_DDL

    with warehouse.get_connection() as con:
        latest = con.execute("SELECT max(as_of_date) FROM marts.labels WHERE as_of_kind = 'latest'"
                             ).fetchone()[0]
        if latest is None:
            raise dg.Failure("marts.labels has no 'latest' as-of date")
        con.execute("CREATE SCHEMA IF NOT EXISTS outputs")
        con.execute(KNOWN_CASES_DDL)
        con.execute("BEGIN TRANSACTION")
        con.execute("DELETE FROM outputs.known_cases WHERE as_of_date = ?", [latest])
        con.execute("INSERT INTO outputs.known_cases SELECT pupil_id, school_code, grade, as_of_date, "
                    "nonillness_absent_days FROM marts.labels WHERE known_case AND as_of_date = ?",
                    [latest])
        con.execute("COMMIT")
        n = con.execute("SELECT count(*) FROM outputs.known_cases WHERE as_of_date = ?", [latest]).fetchone()[0]
        per_school = con.execute("SELECT school_code, count(*) AS known_cases FROM outputs.known_cases "
                                 "WHERE as_of_date = ? GROUP BY 1 ORDER BY 1", [latest]).df()
    return dg.MaterializeResult(metadata={"dagster/row_count": n, "as_of_date": date_text(latest),
                                          "per_school": _md(per_school)})


@dg.asset(
    key=DRIFT_KEY,
    group_name="scoring",
    kinds={"evidently", "duckdb"},
    deps=[MODEL_KEY, FEATURES_KEY, LABELS_KEY],
    description="Evidently data drift of the champion's most important features: the cohort at "
                "the latest as-of date against the cohort at the same point of last year (the "
                "nearest as-of date one year earlier), plus jumps in missing values. Per-feature "
                "table quality.feature_drift, one row per run in quality.feature_drift_runs, HTML "
                "report under reports/drift/. Its blocking check drift_within_limit stops "
                "outputs/risk_scores when too many features moved.",
    metadata={"dagster/table_name": "quality.feature_drift"},
)
def feature_drift(context: dg.AssetExecutionContext, config: DriftConfig, toda: TodaHome,
                  warehouse: DuckDBResource, mlflow: MlflowTracking) -> dg.MaterializeResult:
    from ml.dataset import load_frame
    from quality import drift

    tracker = mlflow.tracker()
    loaded = mlflow.champion()  # a young city of a deployment: the champion it borrows
    with warehouse.get_connection() as con:
        drift.ensure_tables(con)
        latest = con.execute("SELECT max(as_of_date) FROM marts.labels WHERE as_of_kind = 'latest'"
                             ).fetchone()[0]
        if config.accept_features:
            drift.accept(con, config.accept_features, config.accept_reason, run_id=context.run.run_id,
                         on=latest)
        dates = [r[0] for r in con.execute("SELECT DISTINCT as_of_date FROM marts.labels "
                                           "WHERE as_of_kind = 'month_start'").fetchall()]
        ref_date = drift.reference_date(dates, latest) if latest else None
        if loaded is None or ref_date is None:
            if loaded is None:
                status = "no champion: nothing will be published"
            elif latest is None:
                status = "marts.labels has no latest as-of date: nothing to compare"
            else:
                status = f"no as-of date near one year before {latest}: drift cannot be measured"
            context.log.warning(status)
            drift.record_run(con, None, run_id=context.run.run_id, as_of_date=latest, status=status,
                             model_version=loaded[0] if loaded else None)
            return dg.MaterializeResult(metadata={"status": status})
        version, booster, meta = loaded
        top = drift.top_features(booster, config.top_features)  # feature -> gain
        current = load_frame(con, kinds=("latest",), as_of_dates=[latest], features=list(top))
        reference = load_frame(con, kinds=("month_start",), as_of_dates=[ref_date], features=list(top))
        accepted = drift.accepted_features(con, latest)
    html = toda.paths.reports / "drift" / f"feature_drift_{pd.Timestamp(latest).date()}.html"
    result = drift.feature_drift(reference, current, list(top), reference_date=ref_date,
                                 current_date=latest, drift_share_limit=config.drift_share_limit,
                                 null_jump=config.null_jump, accepted=accepted, weights=top,
                                 html_path=html)
    with warehouse.get_connection() as con:
        drift.record_run(con, result, run_id=context.run.run_id, as_of_date=latest,
                         status="measured", model_version=version)
    (context.log.info if result.passed else context.log.error)(result.summary())
    shown = result.columns.sort_values(["drifted", "score"], ascending=False).head(15)
    return dg.MaterializeResult(metadata={
        "summary": text(result.summary()),
        "drifted_share": number(result.share),
        "drifted_features": dg.MetadataValue.json(result.drifted),
        "accepted_features": dg.MetadataValue.json(sorted(accepted & set(top))),
        "reference_date": date_text(ref_date),
        "as_of_date": date_text(latest),
        "model_version": _champion_text(meta.get("model_name", tracker.model_name), version, meta),
        "report": dg.MetadataValue.path(str(result.report_path or "")),
        "features": _md(shown[["column", "weight", "method", "score", "threshold", "null_share_reference",
                               "null_share_current", "drifted", "reason"]]),
    })


@dg.asset_check(
    asset=DRIFT_KEY,
    name="drift_within_limit",
    blocking=True,
    description="Fails when the drifted scoring features (not accepted) carry more than the "
                "limit's share of the features' importance (gain). Blocking: "
                "outputs/risk_scores is then skipped and the list published before stays as it "
                "was. Read the HTML report; fix the source, or accept the "
                "features with the asset's accept_features config.",
)
def drift_within_limit(context: dg.AssetCheckExecutionContext,
                       warehouse: DuckDBResource) -> dg.AssetCheckResult:
    from quality import drift

    with warehouse.get_connection() as con:
        run = drift.latest_run(con, context.run.run_id)
    if run is None:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR,
                                   description="no drift measurement recorded")
    measured = run["status"] == "measured"
    return dg.AssetCheckResult(
        passed=bool(run["passed"]),
        severity=dg.AssetCheckSeverity.ERROR,
        description=run["summary"],
        metadata={"as_of_date": date_text(run["as_of_date"]), "status": run["status"],
                  "drifted_share": number(run["drifted_share"]) if measured else 0.0,
                  "drifted_features": dg.MetadataValue.json([str(x) for x in (
                      run["drifted_features"] if run["drifted_features"] is not None else [])]),
                  "report": dg.MetadataValue.path(run["report_path"] or "")},
    )


model_assets = [futoukou_risk, source_ablation, fairness_audit]
scoring_assets = [feature_drift, risk_scores, known_cases]
scoring_checks = [drift_within_limit, *risk_list_checks]
