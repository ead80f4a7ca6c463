"""The second half of the seed (group ``outputs``): the 学校カルテ, the measured effect of
support and the 貧困・虐待 screen.
``outputs/school_karte``    each school and year beside the city and its own past; beating the
                            odds on achievement growth (value added) with intervals; which
                            practices go with it (association). Tables outputs.school_karte,
                            outputs.karte_practices; charts under reports/karte/
``outputs/support_effects`` naive and adjusted effect of each support action on the following
                            non-illness absences, bootstrap intervals; MLflow experiment
                            ``support_effects``; table outputs.support_effects
``outputs/hardship_screen`` transparent weighted indicators (ml/hardship_indicators.toml) at the
                            latest as-of date; table outputs.hardship_screen

The logic is in :mod:`ml.karte`, :mod:`ml.support_effects` and :mod:`ml.hardship` (pure; no
Dagster); these assets read the warehouse with SQL, call them and write small result tables.
The truth folder of the synthetic city is never read here (bench/outputs_vs_truth.py does).
"""


import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from assets.marts import AGGREGATES_AUTOMATION, AGGREGATES_KEY, FEATURES_KEY
from assets.metadata import date_text
from assets.metadata import md_table as _md
from assets.models import _replace_as_of, _write
from assets.sources import staging_key
from resources.mlflow import MlflowTracking
from resources.toda import TodaHome

KARTE_KEY = dg.AssetKey(["outputs", "school_karte"])
SUPPORT_KEY = dg.AssetKey(["outputs", "support_effects"])
HARDSHIP_KEY = dg.AssetKey(["outputs", "hardship_screen"])
SUPPORT_EXPERIMENT = "support_effects"


class SupportEffectsConfig(dg.Config):
    n_boot: int = 200   # bootstrap resamples of pupils for the intervals
    seed: int = 0


@dg.asset(
    key=KARTE_KEY,
    group_name="outputs",
    kinds={"duckdb", "matplotlib"},
    deps=[AGGREGATES_KEY, staging_key("prefectural_achievement"), staging_key("school_context")],
    automation_condition=AGGREGATES_AUTOMATION,
    description="学校カルテ: per school and school year, attendance, 不登校, Q-U, mood, achievement, "
                "teacher stress and overtime beside the city average (same school type, published "
                "cells only) and the school's own earlier years; beating the odds: value added on "
                "the same pupils' achievement growth, adjusted for prior attainment and school "
                "context, with 95% intervals and a verdict in words only where the interval "
                "clears zero; practices associated with it. Tables outputs.school_karte and "
                "outputs.karte_practices; one PNG per school and a board chart in reports/karte/.",
    metadata={"dagster/table_name": "outputs.school_karte"},
)
def school_karte(context: dg.AssetExecutionContext, warehouse: DuckDBResource,
                 toda: TodaHome) -> dg.MaterializeResult:
    from ml import karte

    with warehouse.get_connection() as con:
        aggregates = con.execute("SELECT * FROM marts.school_aggregates").df()
        pairs = karte.growth_pairs(con)
    per_year, pooled = karte.beating_odds(pairs)
    table = karte.karte_table(aggregates, per_year, pooled)
    practices = karte.practices_association(aggregates, pooled)
    out_dir = toda.paths.reports / "karte"
    charts = [karte.school_chart(table, code, out_dir) for code in sorted(table.school_code.unique())]
    names = dict(zip(table.school_code, table.school_name))
    board = karte.board_chart(pooled, names, out_dir) if len(pooled) else None
    with warehouse.get_connection() as con:
        _write(con, karte.TABLE, table)
        _write(con, karte.PRACTICES_TABLE, practices)
    shown = pooled.assign(school_name=pooled.school_code.map(names))[
        ["school_name", "n_pupils", "estimate", "low", "high", "verdict_ja"]]
    context.log.info(f"school_karte: {len(table)} school-years, {len(charts)} charts in {out_dir}")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(table),
        "schools_above_odds": int((pooled.low > 0).sum()),
        "schools_below_odds": int((pooled.high < 0).sum()),
        "beating_odds_pooled": _md(shown),
        "practices": _md(practices[["label_ja", "n_schools", "correlation", "ci_low", "ci_high"]]),
        "board_chart": dg.MetadataValue.path(str(board) if board else ""),
        "charts": dg.MetadataValue.path(str(out_dir)),
    })


def _screen_at(con, kinds) -> pd.DataFrame:
    from ml import hardship

    spec = hardship.load_spec()
    return hardship.screen(hardship.load_features(con, spec, kinds=kinds), spec)


@dg.asset(
    key=SUPPORT_KEY,
    group_name="outputs",
    kinds={"duckdb", "mlflow"},
    deps=[staging_key("support_records"), staging_key("attendance_daily"),
          staging_key("long_absence_survey"), FEATURES_KEY],
    description="For each support action: the non-illness absence rate over the 20 school days "
                "after the decision, supported over comparable (not yet supported pupils of the "
                "same case meeting, reweighted to the supported ones' strata of recent and "
                "year-to-date absences, their rate, last year's 不登校 and the hardship screen), "
                "naive beside adjusted, 95% bootstrap intervals over pupils, and the same "
                "estimator on the 20 days before as a balance check. Below 1 = fewer absences. "
                "MLflow experiment support_effects; table outputs.support_effects.",
    metadata={"dagster/table_name": "outputs.support_effects"},
)
def support_effects(context: dg.AssetExecutionContext, config: SupportEffectsConfig,
                    warehouse: DuckDBResource, mlflow: MlflowTracking,
                    toda: TodaHome) -> dg.MaterializeResult:
    from ml import support_effects as S

    with warehouse.get_connection() as con:
        screen = _screen_at(con, ("month_start", "latest"))
        frame = S.candidates(con, screen)
    if not frame.supported.any():
        context.log.warning("no support decisions in staging.support_records: nothing to estimate")
    table = S.estimate_all(frame, n_boot=config.n_boot, seed=config.seed)
    table["estimated_at"] = pd.Timestamp.now(tz="Asia/Tokyo").tz_localize(None)
    chart = S.effects_chart(table, toda.paths.reports / "support")
    tracker = mlflow.tracker(SUPPORT_EXPERIMENT)
    with tracker.run("support_effects", tags={"kind": "support_effects", "design": S.DESIGN}):
        tracker.log_params({"window_school_days": S.WINDOW, "pre_window_school_days": S.PRE_WINDOW,
                            "n_boot": config.n_boot, "seed": config.seed, "design": S.DESIGN,
                            "candidates": len(frame), "meetings": frame[["school_code", "decided_on"]]
                            .drop_duplicates().shape[0]})
        for r in table.itertuples():
            if r.n_supported:
                tracker.log_metrics({f"{r.action}_{m}": float(getattr(r, m)) for m in
                                     ("naive_effect", "adjusted_effect", "ci_low", "ci_high",
                                      "balance_pre_ratio", "n_supported", "n_unmatched")})
        tracker.log_table(table, "support_effects.csv")
        import mlflow as mlflow_client

        mlflow_client.log_artifact(str(chart))
    with warehouse.get_connection() as con:
        _write(con, "outputs.support_effects", table)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(table),
        "candidates": len(frame),
        "effects": _md(table[["action_ja", "n_supported", "n_unmatched", "naive_effect", "adjusted_effect",
                              "ci_low", "ci_high", "balance_pre_ratio"]]),
        "why_naive_differs": S.WHY_DIFFERENT_JA,
        "chart": dg.MetadataValue.path(str(chart)),
        "mlflow_experiment": SUPPORT_EXPERIMENT,
    })


@dg.asset(
    key=HARDSHIP_KEY,
    group_name="outputs",
    kinds={"duckdb"},
    deps=[FEATURES_KEY],
    description="貧困・虐待 screen at the latest as-of date: the weighted indicators of "
                "ml/hardship_indicators.toml (each with a weight and a reason, edited by people) "
                "over the point-in-time pupil table; score, rank in school and the indicators that "
                "fired in words. A list for a person to assess, never a decision. One list per "
                "as-of date is kept. Table outputs.hardship_screen.",
    metadata={"dagster/table_name": "outputs.hardship_screen"},
)
def hardship_screen(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.MaterializeResult:
    from ml import hardship

    with warehouse.get_connection() as con:
        latest = con.execute("SELECT max(as_of_date) FROM marts.pupil_features WHERE as_of_kind = 'latest'"
                             ).fetchone()[0]
        rows = _screen_at(con, ("latest",)) if latest is not None else None
        if rows is not None:
            rows = rows[rows.as_of_date == pd.Timestamp(latest)].assign(
                screened_at=pd.Timestamp.now(tz="Asia/Tokyo").tz_localize(None))
            _replace_as_of(con, hardship.TABLE, hardship.HARDSHIP_SCREEN_DDL, rows, latest)
    if latest is None:
        raise dg.Failure("marts.pupil_features has no 'latest' as-of date to screen")
    fired = rows[rows.n_indicators > 0]
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(rows),
        "as_of_date": date_text(latest),
        "pupils_with_an_indicator": len(fired),
        "score_distribution": dg.MetadataValue.json(
            {str(k): int(v) for k, v in rows.screen_score.value_counts().sort_index().items()}),
    })


output_assets = [school_karte, support_effects, hardship_screen]
