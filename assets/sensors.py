"""React to new files in the landing zone, follow the automation conditions, record failed runs."""


import datetime as dt
import json
import time

import dagster as dg

from assets.scope import SINGLE, Scope
from assets.sources import staging_key
from resources.toda import TodaHome
from toda_platform import alerts, landing_rescore, landing_watch
from toda_platform.deployment import CITY_TAG, DeploymentError, run_city
from toda_platform.warehouse import WarehouseLocked, connect

SENSOR_LOCK_WAIT = 20.0  # seconds a tick waits for a run's warehouse lock before trying next tick


def _manifest(paths):
    """What the manifest has seen, read-only; {} before the first run made the warehouse."""
    path = paths.warehouse
    if not path.exists():
        return {}
    con = connect(path, read_only=True, wait=SENSOR_LOCK_WAIT)
    try:
        return landing_watch.manifest_seen(con)
    finally:
        con.close()


def build_sensors(scope: Scope = SINGLE) -> list[dg.SensorDefinition]:
    """The landing-zone sensor and the automation sensor of one city (run failures: one sensor
    for the whole instance, below)."""

    @dg.sensor(
        name=scope.name("landing_zone_sensor"),
        minimum_interval_seconds=60,
        target=scope.groups("sources"),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Stages, in one run, every source whose landing folder holds a settled file the "
                    "file manifest has not seen (so its first tick after `toda demo` starts nothing). "
                    "In that run the school master and the registry go first: the other sources are "
                    "checked against them.",
    )
    def landing_zone_sensor(context: dg.SensorEvaluationContext, toda: TodaHome):
        paths = toda.paths_of(scope.city)
        cursor = json.loads(context.cursor) if context.cursor else {}
        try:
            tick = landing_watch.evaluate(paths, cursor, lambda: _manifest(paths),
                                          running=lambda: _landing_runs(context, scope))
        except WarehouseLocked:
            return dg.SkipReason("the warehouse is busy with a run: looking again at the next tick")
        context.update_cursor(json.dumps(tick.cursor, sort_keys=True))
        if not tick.to_stage:
            return dg.SkipReason("no file in the landing zone that the manifest has not seen")
        if tick.retried:
            context.log.warning(f"asked again for {', '.join(tick.retried)}: the run asked for before ended "
                                f"without staging its files")
        # one run: Dagster orders the staging assets by their deps (reference sources first); a
        # retry gets a run key of its own (the same key would be deduplicated away)
        key = ",".join(f"{k}:{tick.cursor[k]}" for k in tick.to_stage)
        retry = f":retry@{int(time.time())}" if tick.retried else ""
        return dg.RunRequest(run_key=f"landing:{key}{retry}",
                             asset_selection=[scope.key(staging_key(k)) for k in tick.to_stage],
                             tags={**scope.tags, LANDING_TAG: ",".join(tick.to_stage)})

    # Dagster creates a stopped default sensor for automation conditions; this one is on from the
    # start, so an asset declared eager (marts/school_aggregates) follows its sources by itself.
    automation_sensor = dg.AutomationConditionSensorDefinition(
        name=scope.name("automation_sensor"),
        target=scope.everything,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=60,
        run_tags=scope.tags,
        description="Evaluates the assets' automation conditions (marts/school_aggregates: eager, "
                    "once its sources' blocking checks passed) and starts the runs they request.",
    )
    return [landing_zone_sensor, automation_sensor]


LANDING_TAG = "toda/landing_sources"
ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
          dg.DagsterRunStatus.STARTED]


def _landing_runs(context: dg.SensorEvaluationContext, scope: Scope = SINGLE) -> set[str]:
    """The source keys of this city's landing runs still queued or running."""
    city = {CITY_TAG: scope.city} if scope.city else {}
    runs = context.instance.get_runs(filters=dg.RunsFilter(statuses=ACTIVE, tags=city))
    return {k for r in runs for k in (r.tags.get(LANDING_TAG) or "").split(",") if k}


landing_zone_sensor, automation_sensor = build_sensors()

AFTER_LANDING_TAG = "toda/after_landing"  # on a rescoring run: the staged sources it follows
# the run queue starts higher priorities first: the new list goes before runs the automation
# sensor queued meanwhile (the 学校カルテ; the snapshot itself waits for the list: assets/serving.py)
LIST_FIRST = {"dagster/priority": "1"}


def list_sources(asset_graph, scope: Scope, list_key: dg.AssetKey) -> set[str]:
    """The source keys whose staging tables the list (``list_key``) reads, directly or not."""
    upstream = (scope.assets(list_key).upstream() & scope.groups("sources")).resolve(asset_graph)
    return {k.path[-1] for k in upstream}


def landing_successes(instance: dg.DagsterInstance, scope: Scope, since: float) -> list[landing_rescore.LandingRun]:
    """This city's landing runs that succeeded after ``since`` (epoch seconds)."""
    city = {CITY_TAG: scope.city} if scope.city else {}
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS], tags=city,
                              updated_after=dt.datetime.fromtimestamp(since, dt.timezone.utc)),
        limit=1000)
    return [landing_rescore.LandingRun(r.dagster_run.run_id, r.create_timestamp.timestamp(), r.end_time,
                                       frozenset(k for k in r.dagster_run.tags[LANDING_TAG].split(",") if k))
            for r in records if r.end_time and r.dagster_run.tags.get(LANDING_TAG)]


def list_built_at(instance: dg.DagsterInstance, key: dg.AssetKey) -> float | None:
    """When ``key`` (the risk list) was last materialised (epoch seconds), None if never."""
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=1,
                                              ascending=False).records
    return records[0].timestamp if records else None


def failed_blocking_checks(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, str]]:
    """(asset, check) of the ERROR-severity checks that failed in the run."""
    failed = []
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = record.dagster_event.event_specific_data
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            failed.append((evaluation.asset_key.to_user_string(), evaluation.check_name))
    return failed


def last_list_run(instance: dg.DagsterInstance, scope: Scope, list_jobs: set[str]) -> landing_rescore.ListRun | None:
    """The city's latest run of one of ``list_jobs``, with the blocking checks that stopped it."""
    city = {CITY_TAG: scope.city} if scope.city else {}
    records = [r for job in sorted(list_jobs)
               for r in instance.get_run_records(filters=dg.RunsFilter(job_name=job, tags=city), limit=1)]
    if not records:
        return None
    last = max(records, key=lambda r: r.create_timestamp)
    run, failed = last.dagster_run, last.dagster_run.status == dg.DagsterRunStatus.FAILURE
    checks = failed_blocking_checks(instance, run.run_id) if failed else []
    return landing_rescore.ListRun(run.run_id, run.job_name, failed, last.create_timestamp.timestamp(),
                                   last.end_time, int(run.tags.get(landing_rescore.RETRY_TAG, 0)),
                                   tuple(sorted({f"{a}:{c}" for a, c in checks})))


def checks_passed_since(instance: dg.DagsterInstance, checks: tuple[str, ...], run_id: str) -> set[str]:
    """Those of ``checks`` ("asset:check"), which failed in run ``run_id``, whose latest
    evaluation passed since (in another run: the latest is later than the failed one; event
    order, not timestamps, which the storage keeps to the second)."""
    passed = set()
    for name in checks:
        asset, check = name.rsplit(":", 1)
        record = instance.get_latest_asset_check_evaluation_record(
            dg.AssetCheckKey(dg.AssetKey.from_user_string(asset), check))
        if record is not None and record.status.value == "SUCCEEDED" and record.run_id != run_id:
            passed.add(name)
    return passed


def build_rescore_sensor(scope: Scope, job, list_key: dg.AssetKey, list_jobs: set[str],
                         request_tags, published_key: dg.AssetKey) -> dg.SensorDefinition:
    """After the landing sensor's runs staged what the list reads: ``job`` (the rescoring), once the
    landing has settled (toda_platform/landing_rescore.py decides). ``list_jobs``: the names of
    the jobs that rebuild the list (one of them queued reads the new files anyway);
    ``request_tags()``: the run's partition range, computed at the tick. The same sensor asks
    again for the list when the last of those runs failed (``published_key``: the portal's
    snapshot, the list as published): retried after an error, or once the checks that stopped it pass."""

    @dg.sensor(
        name=scope.name("rescore_after_landing"),
        job=job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="A new risk list soon after new files land, not at the next schedule: once the "
                    "landing sensor's runs have staged a source the list reads, none is queued or "
                    "running and no new file was noticed for TODA_RESCORE_QUIET_SECONDS (default "
                    "180 s; at most 30 minutes after the first), starts the morning rescoring job (the "
                    "latest as-of months, the drift gate, the list, the snapshot; no training). One run "
                    "for a drop of many files. When the last run that rebuilds the list failed, asks "
                    "again: after an error in 5, 10 and 20 minutes (TODA_LIST_RETRY_SECONDS; then the "
                    "next schedule); after a "
                    "failed blocking check (the drift gate) once that check has passed since (e.g. the "
                    "features accepted in a run of the drift asset).",
    )
    def rescore_after_landing(context: dg.SensorEvaluationContext):
        instance = context.instance
        cursor = float(context.cursor) if context.cursor else None
        built = list_built_at(instance, scope.key(list_key))
        since = max((t for t in (cursor, built) if t is not None), default=0.0)
        city = {CITY_TAG: scope.city} if scope.city else {}
        queued = instance.get_runs(filters=dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED], tags=city))
        decision = landing_rescore.decide(
            landing_successes(instance, scope, since), cursor, now=time.time(),
            relevant=list_sources(context.repository_def.asset_graph, scope, list_key),
            list_built_at=built, landing_active=bool(_landing_runs(context, scope)),
            rescoring_queued=any(r.job_name in list_jobs for r in queued),
            quiet=landing_rescore.quiet_seconds())
        if decision.cursor is not None and decision.cursor != cursor:
            context.update_cursor(repr(decision.cursor))
        if decision.request:
            context.log.info(decision.reason)
            return dg.RunRequest(run_key=decision.run_key, tags={
                **request_tags(), **LIST_FIRST, AFTER_LANDING_TAG: ",".join(decision.sources)})
        last = last_list_run(instance, scope, list_jobs)
        active = instance.get_runs(filters=dg.RunsFilter(statuses=ACTIVE, tags=city), limit=50)
        retry = landing_rescore.decide_retry(
            last, now=time.time(), published_at=list_built_at(instance, scope.key(published_key)),
            passed_since=checks_passed_since(instance, last.failed_checks, last.run_id)
            if last and last.failed_checks else (),
            list_active=any(r.job_name in list_jobs for r in active),
            backoff=landing_rescore.retry_backoff_seconds())
        if not retry.request:
            return dg.SkipReason(f"{decision.reason}; {retry.reason}" if last and last.failed else decision.reason)
        context.log.warning(retry.reason)
        return dg.RunRequest(run_key=retry.run_key, tags={
            **request_tags(), **LIST_FIRST, landing_rescore.RETRY_TAG: str(retry.attempt)})

    return rescore_after_landing


def failure_alert(context: dg.RunFailureSensorContext) -> alerts.Alert:
    """The alert of a failed run: its failed steps, and the ERROR checks that failed in it."""
    run = context.dagster_run
    steps = []
    for event in context.get_step_failure_events():
        error = getattr(event.event_specific_data, "error", None)
        while getattr(error, "cause", None) is not None:  # Dagster's wrapper -> the asset's own error
            error = error.cause
        steps.append((event.step_key or "", getattr(error, "cls_name", "") or "", getattr(error, "message", "") or ""))
    return alerts.Alert.of_failure(run.run_id, run.job_name, steps, failed_blocking_checks(context.instance, run.run_id),
                                   context.failure_event.message or "")


@dg.run_failure_sensor(
    name="run_failure_alerts",
    default_status=dg.DefaultSensorStatus.RUNNING,
    # every run of the instance: the one code location's, and those executed in a `toda` process
    # (`toda refresh`), which carry no code-location origin and would be passed over otherwise
    monitor_all_code_locations=True,
    description="Records every failed run as an open alert (ops.alerts in $TODA_HOME/ops.sqlite3: "
                "run, job, assets, failed check, message without data values); the portal's "
                "operations page and `toda alerts` list them.",
)
def run_failure_alerts(context: dg.RunFailureSensorContext, toda: TodaHome):
    alert = failure_alert(context)
    run = context.dagster_run
    if toda.deployment:  # the alert goes to the failed run's city (its ops.sqlite3, its portal)
        try:
            paths = toda.paths_of(run_city(run.tags, run.asset_selection or ()))
        except DeploymentError as e:
            context.log.error(f"run {run.run_id} ({run.job_name}) failed and belongs to no one city: {e}")
            return
    else:
        paths = toda.paths
    if alerts.record(paths, alert):
        context.log.info(f"alert recorded for run {alert.run_id} ({alert.job_name})")
