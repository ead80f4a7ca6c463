"""The integrated pupil table, labels and cohort (group ``integrated``) and the school
aggregates (group ``schools``).

Partitioning
  ``marts/pupil_features`` and ``marts/labels`` are partitioned by **month** (Asia/Tokyo, from
  :data:`HISTORY_START`; the current month included). A month's partition builds the as-of dates
  that fall in it: its first school day (May–March) and, in the month of the latest data, the
  ``latest`` as-of date ("today" = the day after the newest attendance date). So

  * one as-of date is rebuilt by materialising its month (``2025-06``);
  * one school year by the range ``2025-04 … 2026-03`` — the assets have a single-run backfill
    policy, so a range is one run in which each as-of date is built once;
  * everything by the whole range (what ``toda demo`` and the nightly schedule do).

  April and August (no first school day to predict from) build nothing unless they hold the
  latest data. As-of dates older than the first partition are built by the first one, and a
  ``latest`` date beyond the wall clock's current month by the last one, so no as-of date is
  ever orphaned.

``marts/school_aggregates`` is not partitioned: it is one small table over all years, rebuilt
whole in a second or two.
"""


import warnings

import dagster as dg
from dagster_duckdb import DuckDBResource

from assets.metadata import json_value, md_table
from assets.sources import staging_key
from ml import aggregates, asof, features, inputs, labels

# The run tags with which Dagster's own single-run backfills select a partition range
# (dagster/_core/storage/tags.py in 1.13; the execution context reads them back as
# ``context.partition_key_range``). Not exported publicly, hence spelled out here; the end-to-end
# test fails if a Dagster upgrade renames them.
ASSET_PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
ASSET_PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"

# The first month of the city's history (the synthetic city's default: school years 2021-).
# Older as-of dates are still built (by the first partition); only the UI's month grid starts here.
HISTORY_START = "2021-04"

# BackfillPolicy.single_run() is what makes a partition range one run; Dagster still labels the
# parameter beta (1.13). Said once here rather than at every import.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)

as_of_months = dg.MonthlyPartitionsDefinition(
    start_date=HISTORY_START, timezone="Asia/Tokyo", fmt="%Y-%m", end_offset=1)

# eager: after any dependency updates, once none is missing or running; AND the deps' blocking
# checks, which eager does not wait for by itself across runs
AGGREGATES_AUTOMATION = (dg.AutomationCondition.eager()
                         & dg.AutomationCondition.all_deps_blocking_checks_passed())

FEATURES_KEY = dg.AssetKey(["marts", "pupil_features"])
LABELS_KEY = dg.AssetKey(["marts", "labels"])
AGGREGATES_KEY = dg.AssetKey(["marts", "school_aggregates"])


def partition_range_tags(partitions_def: dg.PartitionsDefinition = as_of_months) -> dict[str, str]:
    """Run tags that select every partition (one run builds all as-of dates, in-process)."""
    keys = partitions_def.get_partition_keys()
    return {ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]}


class MartConfig(dg.Config):
    """``rebuild``: build every selected as-of date, even those whose inputs (``ml/inputs.py``:
    the staging rows they may read and the code of ml/) are those they were built from."""

    rebuild: bool = False


def _selected(context: dg.AssetExecutionContext, con) -> tuple[list[str], list[asof.AsOf], str, str]:
    keys = list(context.partition_keys)
    all_keys = as_of_months.get_partition_keys()
    first, last = all_keys[0], all_keys[-1]
    return keys, asof.as_of_dates_for_partitions(con, keys, first, last), first, last


def _range_text(keys: list[str]) -> str:
    return keys[0] if len(keys) == 1 else f"{keys[0]}…{keys[-1]}"


@dg.asset(
    key=FEATURES_KEY,
    group_name="integrated",
    kinds={"duckdb"},
    partitions_def=as_of_months,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[staging_key(k) for k in features.SOURCES_READ],
    description="One row per (pupil, as-of date) for the cohort, built only from staging rows "
                "known strictly before the as-of date (ml/features.py). Features from every "
                "pupil-level source, prefixed by source; NULL plus a *_missing indicator where "
                "there is no data yet.",
    metadata={"dagster/table_name": features.FEATURES_TABLE},
)
def pupil_features(context: dg.AssetExecutionContext, config: MartConfig,
                   warehouse: DuckDBResource) -> dg.MaterializeResult:
    with warehouse.get_connection() as con:
        keys, as_ofs, first, last = _selected(context, con)
        stale = asof.stale_as_of_dates(con, features.FEATURES_TABLE, as_ofs, keys, first, last)
        fingerprints = None if config.rebuild else inputs.features_fingerprints(con, as_ofs)
        context.log.info(f"months {_range_text(keys)}: {len(as_ofs)} as-of dates, "
                         f"{len(stale)} stale dates to remove")
        report = features.build_features(con, as_ofs, stale=stale, log=context.log.info,
                                         fingerprints=fingerprints)
        context.log.info(f"{len(report.as_of_dates)} as-of dates built, {len(report.unchanged)} unchanged "
                         f"(their inputs had not changed)")
        if report.table_recreated:
            context.log.warning("the feature columns changed: marts.pupil_features was recreated "
                                "and holds only the months of this run — rebuild the others")
        total = con.execute("SELECT count(*) FROM marts.pupil_features").fetchall()[0][0] \
            if report.columns else 0
        preview = con.execute(
            "SELECT * FROM marts.pupil_features ORDER BY as_of_date DESC, pupil_id LIMIT 5"
        ).df() if report.columns else None
    return dg.MaterializeResult(metadata={
        "months": _range_text(keys),
        "as_of_dates": dg.MetadataValue.json(report.as_of_dates),
        "rows_built": sum(report.rows.values()),
        "as_of_dates_unchanged": dg.MetadataValue.json(report.unchanged),
        "rows_per_as_of_date": dg.MetadataValue.json(report.rows),
        "stale_as_of_dates_removed": dg.MetadataValue.json(report.deleted_stale),
        "dagster/row_count": total,
        "columns": report.columns,
        "table_recreated": report.table_recreated,
        "seconds": round(report.seconds, 1),
        "preview": md_table(preview.iloc[:, :12]) if preview is not None else "",
    })


@dg.asset(
    key=LABELS_KEY,
    group_name="integrated",
    kinds={"duckdb"},
    partitions_def=as_of_months,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[staging_key("pupil_registry"), staging_key("attendance_daily"),
          staging_key("long_absence_survey")],
    description="Cohort and 不登校 label per (pupil, as-of date) for every enrolled pupil: "
                "in_cohort (predicted for), known_case (already 30+ non-illness absent days: "
                "listed, not predicted), futoukou_prev_year, and label (NULL until the school "
                "year's long-absence survey exists). Views marts.cohort and marts.known_cases.",
    metadata={"dagster/table_name": "marts.labels",
              "dagster/column_schema": dg.TableSchema(columns=[
                  dg.TableColumn(n, description=d) for n, d in labels.LABEL_COLUMNS.items()])},
)
def labels_asset(context: dg.AssetExecutionContext, config: MartConfig,
                 warehouse: DuckDBResource) -> dg.MaterializeResult:
    with warehouse.get_connection() as con:
        keys, as_ofs, first, last = _selected(context, con)
        stale = asof.stale_as_of_dates(con, "marts.labels", as_ofs, keys, first, last)
        counts = labels.build_labels(con, as_ofs, stale=stale, fingerprints=None if config.rebuild
                                     else inputs.labels_fingerprints(con, as_ofs))
        total = con.execute("SELECT count(*), count(*) FILTER (label_available) FROM marts.labels"
                            ).fetchall()[0]
    return dg.MaterializeResult(metadata={
        "months": _range_text(keys),
        "as_of_dates": json_value(sorted(counts)),
        "per_as_of_date": json_value(counts),
        "stale_as_of_dates_removed": dg.MetadataValue.json([d.isoformat() for d in stale]),
        "dagster/row_count": total[0],
        "rows_with_label": total[1],
    })


@dg.asset(
    key=AGGREGATES_KEY,
    group_name="schools",
    kinds={"duckdb"},
    deps=[staging_key(k) for k in aggregates.SOURCES_READ],
    description="One row per (school, school year): enrolment, attendance, long-absence and "
                "不登校 counts and rates, achievement and same-pupil growth, Q-U group shares, mood, "
                "context ratios, teacher stress check, questionnaire and overtime. A cell from "
                "fewer than 10 pupils (or teachers) is NULL with <cell>_suppressed = true.",
    metadata={"dagster/table_name": aggregates.TABLE},
    # a few seconds for every year: rebuilt as soon as a source it reads is restaged (by the
    # landing sensor) and that source's blocking checks passed, not only at night
    automation_condition=AGGREGATES_AUTOMATION,
)
def school_aggregates(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.MaterializeResult:
    with warehouse.get_connection() as con:
        report = aggregates.build_school_aggregates(con)
        preview = con.execute(
            f"SELECT school_code, school_year, enrolment, attendance_rate, futoukou_count, "
            f"futoukou_count_suppressed, ach_level_mean FROM {aggregates.TABLE} "
            "ORDER BY school_year DESC, school_code LIMIT 6").df()
    return dg.MaterializeResult(metadata={
        "dagster/row_count": report["rows"],
        "school_years": report["school_years"],
        "cells_suppressed": report["cells_suppressed"],
        "seconds": report["seconds"],
        "preview": md_table(preview),
    })


@dg.asset_check(asset=FEATURES_KEY, name="one_row_per_pupil_and_as_of_date", blocking=True,
                description="(pupil_id, as_of_date) is unique in marts.pupil_features.")
def features_unique(warehouse: DuckDBResource) -> dg.AssetCheckResult:
    with warehouse.get_connection() as con:
        if not asof.has_table(con, "marts", "pupil_features"):
            return dg.AssetCheckResult(passed=True, metadata={"rows": 0})
        rows, dup = con.execute("SELECT count(*), count(*) - count(DISTINCT (pupil_id, as_of_date)) "
                                "FROM marts.pupil_features").fetchall()[0]
    return dg.AssetCheckResult(passed=dup == 0, metadata={"rows": rows, "duplicate_keys": dup})


@dg.asset_check(asset=FEATURES_KEY, name="features_plausible", blocking=True,
                description="Rules from the column names, over the whole table (quality/marts.py): "
                            "no count below zero, absence rates within 0–1, no more attendance "
                            "marks than school days in a window. Failing blocks the models and "
                            "scores downstream.")
def features_plausible(warehouse: DuckDBResource) -> dg.AssetCheckResult:
    from quality.marts import check_features

    with warehouse.get_connection() as con:
        if not asof.has_table(con, "marts", "pupil_features"):
            return dg.AssetCheckResult(passed=True, metadata={"rows": 0})
        result = check_features(con)
    v = result["violations"]
    return dg.AssetCheckResult(
        passed=not v,
        description="; ".join(f"{x['rule']} in {x['column']} ({x['rows']} rows)" for x in v[:5]) or None,
        metadata={"rows": result["rows"], "rules": result["rules"],
                  "violations": dg.MetadataValue.json(v[:50])})


@dg.asset_check(asset=AGGREGATES_KEY, name="no_small_cells", blocking=True,
                description="A school-year whose enrolment is suppressed shows no pupil figure; "
                            "no flagged cell holds a value.")
def no_small_cells(warehouse: DuckDBResource) -> dg.AssetCheckResult:
    with warehouse.get_connection() as con:
        leaks = " + ".join(f"count(*) FILTER ({c}_suppressed AND {c} IS NOT NULL)"
                           for c in aggregates.SUPPRESSIBLE)
        pupil_cells = [c for c in aggregates.SUPPRESSIBLE
                       if not c.startswith(("stress_", "teacher_", "overtime_", "enrolment"))]
        small = " + ".join(f"count(*) FILTER (enrolment IS NULL AND enrolment_suppressed "
                           f"AND {c} IS NOT NULL)" for c in pupil_cells)
        flagged, small_school = con.execute(
            f"SELECT {leaks}, {small} FROM {aggregates.TABLE}").fetchall()[0]
    return dg.AssetCheckResult(passed=flagged == 0 and small_school == 0,
                               metadata={"flagged_cells_with_value": flagged,
                                         "cells_of_small_schools_shown": small_school})


mart_assets = [pupil_features, labels_asset, school_aggregates]
mart_checks = [features_unique, features_plausible, no_small_cells]

