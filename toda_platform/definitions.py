"""The one Dagster code location: assembles assets, checks, sensors, schedules and resources."""

from __future__ import annotations

import dagster as dg

from assets.marts import mart_assets, mart_checks, nightly_with_marts, partition_range_tags
from assets.models import model_assets, scoring_assets, scoring_checks
from assets.ops import ops_assets, ops_checks
from assets.outputs import output_assets
from assets.serving import serving_assets
from assets.sensors import automation_sensor, landing_zone_sensor, nightly_refresh
from assets.sources import staging_assets, staging_checks
from resources.mlflow import mlflow_resource
from resources.toda import build_resources
from toda_platform.settings import Paths


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
        sensors=[landing_zone_sensor, automation_sensor],
        # the nightly refresh of everything, carrying the partition range the marts need
        schedules=[nightly_with_marts(nightly_refresh)],
        resources={**build_resources(paths), "mlflow": mlflow_resource(paths)},
        # DuckDB allows one writer per file: every step of a run executes in one process, one
        # after another, and the instance's run queue (dagster.yaml) lets one run go at a time.
        executor=dg.in_process_executor,
    )


defs = build_definitions()


DAGSTER_YAML = """\
# Written by `toda demo`. DuckDB takes one writer at a time: one run at a time.
concurrency:
  runs:
    max_concurrent_runs: 1
telemetry:
  enabled: false
"""


def prepare_dagster_home(paths: Paths) -> None:
    """A persistent Dagster instance under TODA_HOME, so the UI shows the demo's runs."""
    import os

    paths.dagster_home.mkdir(parents=True, exist_ok=True)
    config = paths.dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML, encoding="utf-8")
    os.environ["DAGSTER_HOME"] = str(paths.dagster_home)


def materialise_all(paths: Paths, *, instance: dg.DagsterInstance | None = None,
                    ops: dict | None = None) -> dg.ExecuteInProcessResult:
    """Materialise every asset (and run every check) in one in-process run; ``ops`` overrides
    assets' config (the tests make the ablation smaller).

    The partitioned marts (monthly as-of partitions) are built over their whole partition range
    in the same run: the run carries Dagster's partition-range tags, which unpartitioned assets
    ignore and the marts' single-run backfill policy reads as one range (see assets/marts.py).
    """
    if instance is None:
        prepare_dagster_home(paths)
        instance = dg.DagsterInstance.get()
    job = build_definitions(paths).resolve_implicit_global_asset_job_def()
    run_config = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
    if ops:  # per-asset config, e.g. {"models__source_ablation": {"config": {...}}}
        run_config["ops"] = ops
    return job.execute_in_process(instance=instance, raise_on_error=False, run_config=run_config,
                                  tags=partition_range_tags())
