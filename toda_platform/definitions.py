"""The one Dagster code location: assembles assets, checks, sensors, schedules and resources."""

from __future__ import annotations

import dagster as dg

from assets import schedules
from assets.marts import mart_assets, mart_checks, partition_range_tags
from assets.models import model_assets, scoring_assets, scoring_checks
from assets.ops import ops_assets, ops_checks
from assets.outputs import output_assets
from assets.serving import serving_assets
from assets.sensors import automation_sensor, landing_zone_sensor, run_failure_alerts
from assets.sources import staging_assets, staging_checks
from resources.mlflow import mlflow_resource
from resources.toda import build_resources
from toda_platform.settings import Paths
from toda_platform.warehouse import WRITER_TAG


def build_definitions(paths: Paths | None = None) -> dg.Definitions:
    from toda_platform.governance.purposes import check_purposes
    from toda_platform.pseudonym import check_startup_key

    paths = paths or Paths.from_env()
    check_startup_key(paths.pseudonym_key_file, demo=paths.demo)  # no weak or missing key in production
    assets = [*staging_assets, *mart_assets, *model_assets, *scoring_assets, *serving_assets,
              *ops_assets, *output_assets]
    # purpose limitation: refuses to load when an output reads a source beyond its purposes
    check_purposes(assets)
    return dg.Definitions(
        assets=assets,
        asset_checks=[*staging_checks, *mart_checks, *scoring_checks, *ops_checks],
        jobs=schedules.jobs,
        sensors=[landing_zone_sensor, automation_sensor, run_failure_alerts, *schedules.sensors],
        schedules=schedules.schedules,
        resources={**build_resources(paths), "mlflow": mlflow_resource(paths)},
        # DuckDB allows one writer per file: every step of a run executes in one process, one
        # after another; the instance's run queue (dagster.yaml) lets one writer run go at a
        # time; a process outside the queue (`toda refresh`, a notebook) waits for the lock.
        executor=dg.in_process_executor,
    )


defs = build_definitions()


YAML_HEADER = "# Written by `toda`"
DAGSTER_YAML = f"""\
{YAML_HEADER} (rewritten while this line is here). DuckDB takes one writer at a time: the run
# queue starts one run at a time, and at most one run tagged {WRITER_TAG} whatever the limit.
concurrency:
  runs:
    max_concurrent_runs: 1
    tag_concurrency_limits:
      - key: "{WRITER_TAG}"
        limit: 1
run_monitoring:  # a run stuck starting (its process never came up) is failed and alerted
  enabled: true
  start_timeout_seconds: 300
telemetry:
  enabled: false
"""

CLI_PID_TAG = "toda/cli_pid"  # runs executed in a `toda` process (demo, refresh), not by the daemon


def prepare_dagster_home(paths: Paths) -> None:
    """A persistent Dagster instance under TODA_HOME, so the UI shows the demo's runs. The
    config is (re)written unless someone replaced it with their own (no header line)."""
    import os

    paths.dagster_home.mkdir(parents=True, exist_ok=True)
    config = paths.dagster_home / "dagster.yaml"
    # "# Written by `toda demo`" was the header of earlier versions: rewritten too
    if not config.exists() or config.read_text(encoding="utf-8").startswith("# Written by `toda"):
        config.write_text(DAGSTER_YAML, encoding="utf-8")
    os.environ["DAGSTER_HOME"] = str(paths.dagster_home)


def _instance(paths: Paths, instance: dg.DagsterInstance | None) -> dg.DagsterInstance:
    if instance is not None:
        return instance
    prepare_dagster_home(paths)
    return dg.DagsterInstance.get()


def cli_tags() -> dict[str, str]:
    import os

    return {CLI_PID_TAG: str(os.getpid())}


def fail_orphaned_runs(instance: dg.DagsterInstance, pid_alive=None) -> list[str]:
    """Mark failed the runs left "in progress" by a daemon or a machine that stopped: run at the
    daemon's start, when none of its runs can still be running. A run of a `toda` command in a
    terminal is left alone while that process lives. The failure raises an alert like any other."""
    import os

    def alive(pid: int) -> bool:
        return os.path.exists(f"/proc/{pid}")

    pid_alive = pid_alive or alive
    active = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
    failed = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=active)):
        pid = run.tags.get(CLI_PID_TAG)
        if pid and pid.isdigit() and pid_alive(int(pid)):
            continue
        instance.report_run_failed(run, "left unfinished when the Dagster daemon or the machine stopped; "
                                        "the next schedule or sensor tick starts over")
        failed.append(run.run_id)
    return failed


def run_ablation(paths: Paths, *, instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
    """The source ablation by itself, as its Saturday schedule runs it (``toda ablation``)."""
    job = build_definitions(paths).resolve_job_def(schedules.ablation_job.name)
    return job.execute_in_process(instance=_instance(paths, instance), raise_on_error=False, tags=cli_tags())


def refresh(paths: Paths, *, instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
    """Run in this process exactly what the nightly schedule runs: its job, with the tags of
    the run request its tick makes (``toda refresh``)."""
    job = build_definitions(paths).resolve_job_def(schedules.nightly_job.name)
    request = schedules.nightly_request()
    return job.execute_in_process(instance=_instance(paths, instance), raise_on_error=False,
                                  tags={**request.tags, **cli_tags()}, run_config=request.run_config or None)


def materialise_all(paths: Paths, *, instance: dg.DagsterInstance | None = None,
                    ops: dict | None = None, ablation: bool = True) -> dg.ExecuteInProcessResult:
    """Materialise every asset (and run every check) in one in-process run; ``ops`` overrides
    assets' config (the tests make the ablation smaller). ``ablation=False`` leaves out the
    source ablation (39 model fits: the longest step of a demo), which has its own job.

    The partitioned marts (monthly as-of partitions) are built over their whole partition range
    in the same run: the run carries Dagster's partition-range tags, which unpartitioned assets
    ignore and the marts' single-run backfill policy reads as one range (see assets/marts.py).
    """
    instance = _instance(paths, instance)
    defs = build_definitions(paths)
    job = defs.resolve_implicit_global_asset_job_def()
    selection = None if ablation else sorted(
        schedules.EVERYTHING_BUT_ABLATION.resolve(defs.resolve_asset_graph()))
    run_config = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
    if ops:  # per-asset config, e.g. {"models__source_ablation": {"config": {...}}}
        run_config["ops"] = ops
    return job.execute_in_process(instance=instance, raise_on_error=False, run_config=run_config,
                                  asset_selection=selection, tags={**partition_range_tags(), **cli_tags()})
