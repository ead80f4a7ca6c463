"""The platform's clock (Asia/Tokyo): jobs, their schedules, and retraining on a new survey.

=====================  ==========================  =========================================
job                    when                        what
=====================  ==========================  =========================================
nightly_refresh_job    every day 21:00             everything but the source ablation and the
                                                   support effects (also what ``toda refresh``
                                                   runs); marts rebuild only the as-of dates
                                                   whose inputs changed (ml/inputs.py)
morning_rescoring_job  school days 06:30;         the latest as-of months of the marts, the
                       after a landing (sensor     drift gate, the risk list, the snapshot
                       rescore_after_landing)
retrain_job            a new long-absence survey   the survey's downstream: labels, features,
                       (sensor); 15 May 02:00      the model (forced on 15 May), its audit and
                       (yearly fallback, forced)   the scores
drift_report_job       the 1st of a month 06:00    scoring/feature_drift: its report is kept
source_ablation_job    Saturdays 01:00             models/source_ablation
support_effects_job    Sundays 03:00               outputs/support_effects (a 20-school-day
                                                   window: weekly is enough; ~2 min of bootstrap
                                                   kept out of the nightly list's way). The
                                                   snapshot follows by its automation condition
retention_job          the 1st of a month 03:00    rows and files past their source's
                                                   retention period (governance/retention.py);
                                                   skipped on a demo home
=====================  ==========================  =========================================

Every schedule and sensor is on from the start. Every job writes the warehouse and carries the
writer tag, with which the instance's run queue lets one writer go at a time (dagster.yaml).

:func:`build_automation` makes them for a :class:`~assets.scope.Scope`: the single city (the
module's ``jobs``, ``schedules``, ``sensors``), or one city of a deployment (names prefixed with
the city, runs tagged with it: one writer per city, many cities at once).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import dagster as dg

from assets.marts import (ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG,
                          FEATURES_KEY, LABELS_KEY, as_of_months, partition_range_tags)
from assets.models import ABLATION_KEY, DRIFT_KEY, KNOWN_CASES_KEY, MODEL_KEY, RISK_SCORES_KEY
from assets.outputs import SUPPORT_KEY
from assets.scope import SINGLE, Scope
from assets.sensors import build_rescore_sensor
from assets.serving import SNAPSHOT_KEY
from assets.sources import staging_key
from resources.toda import TodaHome
from toda_platform.school_calendar import SchoolCalendar, is_school_day

TZ = "Asia/Tokyo"
SURVEY_KEY = staging_key("long_absence_survey")
FORCE_RETRAIN = {"ops": {"__".join(MODEL_KEY.path): {"config": {"force": True}}}}


def latest_months_tags() -> dict[str, str]:
    """The last two as-of months: the month of the newest data, also just after a month ends."""
    keys = as_of_months.get_partition_keys()
    return {ASSET_PARTITION_RANGE_START_TAG: keys[-2 if len(keys) > 1 else -1],
            ASSET_PARTITION_RANGE_END_TAG: keys[-1]}


def nightly_request() -> dg.RunRequest:
    """What the nightly schedule asks for, and what `toda refresh` runs: every as-of month
    (computed at each tick, so it follows the calendar)."""
    return dg.RunRequest(tags=partition_range_tags())


def rescoring_decision(day: dt.date, calendar: SchoolCalendar) -> str | None:
    """None when ``day`` is a school day; else why there is no rescoring."""
    if is_school_day(day, calendar):
        return None
    if day.weekday() >= 5:
        return f"{day} is a weekend"
    return f"{day} is no school day (a holiday or a long vacation in the school calendar)"


def survey_brought_files(metadata: dict) -> bool:
    """Whether a materialisation of the survey's staging table applied a new file (not a rerun
    that found only files it had read)."""
    applied = metadata.get("files_applied")
    value = getattr(applied, "value", applied)
    return bool(value) and int(value) > 0


@dg.op(name="apply_retention",
       config_schema={"today": dg.Field(str, default_value="", description="YYYY-MM-DD to count back "
                                                                            "from; empty: today in Tokyo"),
                      "dry_run": dg.Field(bool, default_value=False, description="Only say what would go.")},
       description="Drops staged rows, derived rows and archived files past their source's retention "
                   "period (toda_platform/governance/retention.py, the same as `toda retention`).")
def apply_retention(context, toda: TodaHome) -> dg.Output:  # context unannotated: annotations are strings in this module
    from toda_platform.governance import retention

    config = context.op_config
    today = dt.date.fromisoformat(config["today"]) if config["today"] else None
    plan = retention.run(toda.paths, today, dry_run=config["dry_run"], log=context.log.info)
    counts = {t.table: t.rows for t in plan.tables if t.rows}
    return dg.Output(plan.rows, metadata={
        "outcome": retention.summary(plan, dry_run=config["dry_run"]), "today": str(plan.today),
        "dry_run": config["dry_run"], "rows_removed": plan.rows,
        "files_removed": sum(len(f.paths) for f in plan.files), "identity_records_removed": plan.identity_rows,
        "portal_entries_removed": plan.portal_rows,
        "tables": dg.MetadataValue.json(counts)})


def retention_decision(paths) -> str | None:
    """None when retention may run on this home; else why not."""
    if paths.demo:
        return ("a demo home: retention counts from the wall clock and would expire the synthetic city's "
                "oldest records (run `toda retention` or this job by hand to see it)")
    return None


@dataclass(frozen=True)
class Automation:
    nightly_job: dg.UnresolvedAssetJobDefinition
    rescoring_job: dg.UnresolvedAssetJobDefinition
    retrain_job: dg.UnresolvedAssetJobDefinition
    drift_job: dg.UnresolvedAssetJobDefinition
    ablation_job: dg.UnresolvedAssetJobDefinition
    support_job: dg.UnresolvedAssetJobDefinition
    retention_job: dg.JobDefinition
    everything_but_ablation: dg.AssetSelection  # what `toda demo` builds
    schedules: list
    sensors: list

    @property
    def jobs(self) -> list:
        return [self.nightly_job, self.rescoring_job, self.retrain_job, self.drift_job, self.ablation_job,
                self.support_job, self.retention_job]


def build_automation(scope: Scope = SINGLE) -> Automation:
    """The jobs, schedules and sensors of one city (see the table above)."""
    ablation = scope.assets(ABLATION_KEY)
    support = scope.assets(SUPPORT_KEY)
    weekly = ablation | support
    nightly = scope.everything - weekly
    rescoring = scope.assets(FEATURES_KEY, LABELS_KEY, DRIFT_KEY, RISK_SCORES_KEY, KNOWN_CASES_KEY, SNAPSHOT_KEY)
    retrain = scope.assets(SURVEY_KEY).downstream() - scope.groups("sources") - weekly
    survey_key = scope.key(SURVEY_KEY)

    def job(name: str, selection: dg.AssetSelection, description: str) -> dg.UnresolvedAssetJobDefinition:
        return dg.define_asset_job(scope.name(name), selection=selection, tags=scope.tags,
                                   description=description)

    nightly_job = job("nightly_refresh_job", nightly,
                      "Everything but the weekly source ablation and support effects: new files staged, "
                      "the as-of dates of the marts whose inputs changed, the model (retrained only when "
                      "its labelled rows changed), the drift gate and the risk list. `toda refresh` runs "
                      "this job.")
    rescoring_job = job("morning_rescoring_job", rescoring,
                        "The latest as-of months of the marts, the drift gate, the risk list and the "
                        "portal's snapshot: this morning's list from last night's files.")
    retrain_job = job("retrain_job", retrain,
                      "Everything downstream of the long-absence survey (labels, features, the "
                      "model and its audit, the scores).")
    drift_job = job("drift_report_job", scope.assets(DRIFT_KEY),
                    "Evidently drift of the champion's top features, kept as the month's report.")
    ablation_job = job("source_ablation_job", ablation,
                       "Leave-one-source-out and single-source runs (rerun only when the labelled "
                       "rows, its config or ml/ changed).")
    support_job = job("support_effects_job", support,
                      "The effect of each support action on the following 20 school days' absences "
                      "(outputs/support_effects), with its bootstrap intervals.")

    @dg.job(name=scope.name("retention_job"), tags=scope.tags,
            description="Retention: what is past its source's period goes, recorded in governance.retention_log.")
    def retention_job():
        apply_retention()

    @dg.schedule(name=scope.name("nightly_refresh"), job=nightly_job, cron_schedule="0 21 * * *",
                 execution_timezone=TZ, default_status=dg.DefaultScheduleStatus.RUNNING,
                 description="Each evening at 21:00, after the school day's files are in: "
                             + (nightly_job.description or ""))
    def nightly_refresh(context: dg.ScheduleEvaluationContext):
        return nightly_request()

    @dg.schedule(name=scope.name("morning_rescoring"), job=rescoring_job, cron_schedule="30 6 * * 1-5",
                 execution_timezone=TZ, default_status=dg.DefaultScheduleStatus.RUNNING,
                 description="School-day mornings at 06:30 (Mon-Fri, not on holidays or in the long "
                             "vacations of the school calendar): a fresh list before school starts.")
    def morning_rescoring(context: dg.ScheduleEvaluationContext, toda: TodaHome):
        day = context.scheduled_execution_time.astimezone(dt.timezone(dt.timedelta(hours=9))).date()
        why_not = rescoring_decision(day, SchoolCalendar.load(str(toda.paths_of(scope.city).home)))
        if why_not:
            return dg.SkipReason(why_not)
        return dg.RunRequest(tags=latest_months_tags())

    @dg.sensor(name=scope.name("retrain_on_survey"), job=retrain_job,
               default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=300,
               description="Retrains when a new long-absence survey is staged (the labels change once a "
                           "year, with it). Starts from the survey's latest staging: the run that "
                           "made it (`toda demo`, the nightly refresh) trained on it already.")
    def retrain_on_survey(context: dg.SensorEvaluationContext):
        instance = context.instance
        if not context.cursor:
            latest = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=survey_key), limit=1,
                                                     ascending=False).records
            if latest:
                context.update_cursor(str(latest[0].storage_id))
            return dg.SkipReason("starting from the survey's latest staging")
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=survey_key, after_storage_id=int(context.cursor)), limit=1000,
            ascending=True).records
        if not records:
            return dg.SkipReason("the survey was not staged since the last tick")
        context.update_cursor(str(records[-1].storage_id))
        # every staging since the last tick, not only the newest: a rerun finding nothing new must
        # not hide the run before it that applied a file
        new = [r for r in records if survey_brought_files(dict(r.asset_materialization.metadata))]
        if not new:
            return dg.SkipReason("the survey was restaged without a new file")
        return dg.RunRequest(run_key=f"survey:{new[-1].run_id}", tags=partition_range_tags())

    @dg.schedule(name=scope.name("yearly_retrain"), job=retrain_job, cron_schedule="0 2 15 5 *",
                 execution_timezone=TZ, default_status=dg.DefaultScheduleStatus.RUNNING,
                 description="15 May, 02:00: retrain (forced) even if no survey run was noticed — the "
                             "previous school year's survey is in by then.")
    def yearly_retrain(context: dg.ScheduleEvaluationContext):
        return dg.RunRequest(run_config=FORCE_RETRAIN, tags=partition_range_tags())

    drift_report = dg.ScheduleDefinition(
        name=scope.name("monthly_drift_report"), job=drift_job, cron_schedule="0 6 1 * *",
        execution_timezone=TZ, default_status=dg.DefaultScheduleStatus.RUNNING,
        description="The 1st of each month, 06:00: a drift report (reports/drift/, quality.feature_drift_runs).")

    source_ablation = dg.ScheduleDefinition(
        name=scope.name("source_ablation"), job=ablation_job, cron_schedule="0 1 * * 6",
        execution_timezone=TZ, default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Saturdays, 01:00: the source ablation (a no-op when nothing it reads changed).")

    weekly_support_effects = dg.ScheduleDefinition(
        name=scope.name("weekly_support_effects"), job=support_job, cron_schedule="0 3 * * 0",
        execution_timezone=TZ, default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Sundays, 03:00: the support effects of the week's decisions; the portal's snapshot "
                    "follows (its automation condition).")

    @dg.schedule(name=scope.name("monthly_retention"), job=retention_job, cron_schedule="0 3 1 * *",
                 execution_timezone=TZ, default_status=dg.DefaultScheduleStatus.RUNNING,
                 description="The 1st of each month, 03:00: retention (skipped on a demo home).")
    def monthly_retention(context: dg.ScheduleEvaluationContext, toda: TodaHome):
        why_not = retention_decision(toda.paths_of(scope.city))
        if why_not:
            return dg.SkipReason(why_not)
        day = context.scheduled_execution_time.astimezone(dt.timezone(dt.timedelta(hours=9))).date()
        return dg.RunRequest(run_config={"ops": {"apply_retention": {"config": {"today": day.isoformat()}}}})

    rescore_after_landing = build_rescore_sensor(
        scope, rescoring_job, RISK_SCORES_KEY, {nightly_job.name, rescoring_job.name, retrain_job.name},
        latest_months_tags, SNAPSHOT_KEY)

    return Automation(nightly_job, rescoring_job, retrain_job, drift_job, ablation_job, support_job,
                      retention_job, scope.everything - ablation,
                      schedules=[nightly_refresh, morning_rescoring, yearly_retrain, drift_report,
                                 source_ablation, weekly_support_effects, monthly_retention],
                      sensors=[retrain_on_survey, rescore_after_landing])


_single = build_automation()
nightly_job, rescoring_job, retrain_job = _single.nightly_job, _single.rescoring_job, _single.retrain_job
drift_job, ablation_job = _single.drift_job, _single.ablation_job
support_job, retention_job = _single.support_job, _single.retention_job
EVERYTHING_BUT_ABLATION = _single.everything_but_ablation
jobs = _single.jobs
schedules = _single.schedules
sensors = _single.sensors
