"""The one Dagster code location: assembles assets, checks, sensors, schedules and resources."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from assets import schedules
from assets.marts import mart_assets, mart_checks, partition_range_tags
from assets.models import model_assets, scoring_assets, scoring_checks
from assets.ops import ops_assets, ops_checks
from assets.outputs import output_assets
from assets.scope import Scope, prefix_assets
from assets.sensors import automation_sensor, build_sensors, landing_zone_sensor, run_failure_alerts
from assets.serving import serving_assets
from assets.sources import staging_assets, staging_checks
from resources.mlflow import MlflowTracking, mlflow_resource
from resources.toda import build_resources, deployment_resources
from toda_platform.deployment import CITY_TAG, Deployment, DeploymentError
from toda_platform.settings import Paths
from toda_platform.warehouse import WRITER_TAG


def _city_assets() -> tuple[list, list]:
    """One city's assets and asset checks (keys without a city prefix)."""
    from toda_platform.governance.purposes import check_purposes

    assets = [*staging_assets, *mart_assets, *model_assets, *scoring_assets, *serving_assets,
              *ops_assets, *output_assets]
    # purpose limitation: refuses to load when an output reads a source beyond its purposes
    check_purposes(assets)
    return assets, [*staging_checks, *mart_checks, *scoring_checks, *ops_checks]


# DuckDB allows one writer per file: every step of a run executes in one process, one after
# another; the instance's run queue (dagster.yaml) lets one writer run go at a time (per city in
# a deployment); a process outside the queue (`toda refresh`, a notebook) waits for the lock.
EXECUTOR = dg.in_process_executor


def build_definitions(paths: Paths | None = None) -> dg.Definitions:
    """The code location of the single city of ``TODA_HOME``."""
    from toda_platform.pseudonym import check_startup_key

    paths = paths or Paths.from_env()
    check_startup_key(paths.pseudonym_key_file, demo=paths.demo)  # no weak or missing key in production
    assets, checks = _city_assets()
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=schedules.jobs,
        sensors=[landing_zone_sensor, automation_sensor, run_failure_alerts, *schedules.sensors],
        schedules=schedules.schedules,
        resources={**build_resources(paths), "mlflow": mlflow_resource(paths)},
        executor=EXECUTOR,
    )


def build_deployment_definitions(deployment: Deployment) -> dg.Definitions:
    """One code location for every city of the deployment: each city's own asset graph (keys
    under its name), jobs, schedules and sensors (names prefixed with it, runs tagged
    ``toda/city``); one resource of each kind that opens the run's city's home only."""
    from toda_platform.pseudonym import check_startup_key

    cities = deployment.cities()
    if not cities:
        raise DeploymentError(f"no city in {deployment.cities_dir} (one folder per city, each with "
                              "its city.toml)")
    assets, checks = _city_assets()
    city_assets, city_checks, jobs, schedule_defs, sensors = [], [], [], [], []
    for city in cities:
        paths = deployment.paths(city)
        check_startup_key(paths.pseudonym_key_file, demo=paths.demo)  # each city its own key
        scope = Scope(city)
        city_assets += prefix_assets(assets, city)
        city_checks += prefix_assets(checks, city)
        automation = schedules.build_automation(scope)
        jobs += automation.jobs
        schedule_defs += automation.schedules
        sensors += [*build_sensors(scope), *automation.sensors]
    return dg.Definitions(
        assets=city_assets,
        asset_checks=city_checks,
        jobs=jobs,
        sensors=[*sensors, run_failure_alerts],
        schedules=schedule_defs,
        resources={**deployment_resources(deployment.root),
                   "mlflow": MlflowTracking(deployment=str(deployment.root))},
        executor=EXECUTOR,
    )


def build_location() -> dg.Definitions:
    """What workspace.yaml loads: every city of ``TODA_DEPLOYMENT`` when it is set, else the
    single city of ``TODA_HOME``."""
    deployment = Deployment.from_env()
    return build_deployment_definitions(deployment) if deployment else build_definitions()


defs = build_location()


YAML_HEADER = "# Written by `toda`"
INSTANCE_TAIL = """\
run_monitoring:  # a run stuck starting (its process never came up) is failed and alerted
  enabled: true
  start_timeout_seconds: 300
telemetry:
  enabled: false
"""
DAGSTER_YAML = f"""\
{YAML_HEADER} (rewritten while this line is here). DuckDB takes one writer at a time: the run
# queue starts one run at a time, and at most one run tagged {WRITER_TAG} whatever the limit.
concurrency:
  runs:
    max_concurrent_runs: 1
    tag_concurrency_limits:
      - key: "{WRITER_TAG}"
        limit: 1
{INSTANCE_TAIL}"""

MAX_RUNS_ENV = "TODA_MAX_CONCURRENT_RUNS"
K8S_NAMESPACE = "toda"


def k8s_run_launcher(deployment: Deployment, image: str, claim: str = "toda-deployment",
                     mount: str = "/srv/toda") -> dict:
    """dagster-k8s's K8sRunLauncher: each run one Kubernetes Job (its steps in that pod, one after
    another, as on one machine); the deployment root is a shared volume mounted at ``mount``."""
    return {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": {
        "job_namespace": K8S_NAMESPACE,
        "job_image": image,
        "image_pull_policy": "IfNotPresent",
        "service_account_name": "toda-dagster",
        "instance_config_map": "toda-dagster-instance",
        "load_incluster_config": True,
        "env_vars": [f"TODA_DEPLOYMENT={mount}", f"DAGSTER_HOME={mount}/dagster", "TZ=Asia/Tokyo",
                     "DO_NOT_TRACK=true", "MLFLOW_DISABLE_TELEMETRY=true", "GX_ANALYTICS_ENABLED=false"],
        "volumes": [{"name": "deployment", "persistentVolumeClaim": {"claimName": claim}}],
        "volume_mounts": [{"name": "deployment", "mountPath": mount}],
        "run_k8s_config": {"container_config": {"resources": {
            "requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"memory": "8Gi"}}}},
    }}


def deployment_instance_config(deployment: Deployment, max_concurrent_runs: int | None = None,
                               run_launcher: dict | None = None) -> dict:
    """The instance of a deployment: many runs at once, one per city (each city's warehouse
    takes one writer), started from the queue by the daemon; ``run_launcher`` (default: a
    process per run on this machine) e.g. :func:`k8s_run_launcher`."""
    import os

    runs = max_concurrent_runs or int(os.environ.get(MAX_RUNS_ENV, 0)) or max(1, len(deployment.cities()))
    config = {"concurrency": {"runs": {
        "max_concurrent_runs": runs,
        "tag_concurrency_limits": [{"key": CITY_TAG, "value": {"applyLimitPerUniqueValue": True},
                                    "limit": 1}]}}}
    if run_launcher:
        config["run_launcher"] = run_launcher
    return config


def deployment_dagster_yaml(deployment: Deployment, **kwargs) -> str:
    import yaml

    body = yaml.safe_dump(deployment_instance_config(deployment, **kwargs), sort_keys=False,
                          allow_unicode=True)
    return (f"{YAML_HEADER} (rewritten while this line is here). Many cities at once, one writer "
            f"per city: the run queue starts at most one run per value of the {CITY_TAG} tag.\n"
            + body + INSTANCE_TAIL)


def _write_instance(dagster_home: Path, text: str) -> None:
    """The config is (re)written unless someone replaced it with their own (no header line)."""
    import os

    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    # "# Written by `toda demo`" was the header of earlier versions: rewritten too
    if not config.exists() or config.read_text(encoding="utf-8").startswith("# Written by `toda"):
        config.write_text(text, encoding="utf-8")
    os.environ["DAGSTER_HOME"] = str(dagster_home)


def prepare_dagster_home(paths: Paths) -> None:
    """A persistent Dagster instance under TODA_HOME, so the UI shows the demo's runs."""
    _write_instance(paths.dagster_home, DAGSTER_YAML)


def prepare_deployment_home(deployment: Deployment, **kwargs) -> None:
    """The one Dagster instance of a deployment, under ``$TODA_DEPLOYMENT/dagster``."""
    _write_instance(deployment.dagster_home, deployment_dagster_yaml(deployment, **kwargs))


CLI_PID_TAG = "toda/cli_pid"  # runs executed in a `toda` process (demo, refresh), not by the daemon


def open_instance(dagster_home: Path) -> dg.DagsterInstance:
    """The Dagster instance of ``dagster_home`` (its config written, DAGSTER_HOME set). Opened under
    a file lock: `toda` processes started at once on a fresh home (one refresh per city) would
    otherwise race to create the same SQLite storage, and all but one fail ("Version table
    'alembic_version' has more than one head present")."""
    import fcntl

    with open(dagster_home / ".instance.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return dg.DagsterInstance.get()


def _instance(paths: Paths, instance: dg.DagsterInstance | None) -> dg.DagsterInstance:
    if instance is not None:
        return instance
    prepare_dagster_home(paths)
    return open_instance(paths.dagster_home)


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


def refresh_city(deployment: Deployment, city: str, *,
                 instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
    """One city's nightly job of the deployment's code location, run in this process with the
    tags its schedule's run carries (``toda deployment refresh CITY``). Each city in its own
    process: many cities at once, as the daemon launches them."""
    if instance is None:
        prepare_deployment_home(deployment)
        instance = open_instance(deployment.dagster_home)
    scope = Scope(city)
    deployment.paths(city)  # refuses a city that is not configured
    job = build_deployment_definitions(deployment).resolve_job_def(scope.name(schedules.nightly_job.name))
    request = schedules.nightly_request()
    return job.execute_in_process(instance=instance, raise_on_error=False,
                                  tags={**scope.tags, **request.tags, **cli_tags()})
