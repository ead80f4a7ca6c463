"""Many cities, one deployment: one code location for every city, each city's assets, jobs,
schedules and sensors apart, each run opening its own city's home only; the run queue lets one
writer per city and many cities go at once; the same definitions under Kubernetes."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg
import duckdb
import pytest
import yaml

from assets.scope import Scope
from tests.conftest import write_csv
from toda_platform.definitions import (build_definitions, build_deployment_definitions,
                                       deployment_dagster_yaml, k8s_run_launcher, prepare_deployment_home)
from toda_platform.deployment import CITY_TAG, Deployment, DeploymentError, run_city
from toda_platform.warehouse import WRITER_TAG

CITIES = ("toda", "warabi")
TOKYO = dt.timezone(dt.timedelta(hours=9))
SCHOOLS = {"toda": ("B211222400015", "戸田第一小学校"), "warabi": ("B211222300016", "蕨北小学校")}


@pytest.fixture
def deployment(tmp_path, monkeypatch) -> Deployment:
    d = Deployment.from_env(tmp_path / "deployment")
    for name in CITIES:
        d.add_city(name)
    monkeypatch.setenv("TODA_DEPLOYMENT", str(d.root))
    return d


@pytest.fixture
def defs(deployment) -> dg.Definitions:
    return build_deployment_definitions(deployment)


def _land_school(paths, code, name, mtime=1_600_000_000):
    return write_csv(paths.landing_dir("school_master") / "学校一覧.csv", ["学校コード", "学校名", "学校種", "学区"],
                     [[code, name, "小", "北"]], encoding="cp932", mtime=mtime)


def test_every_configured_city_and_only_those(deployment, tmp_path):
    (deployment.cities_dir / "not_a_city").mkdir()  # no city.toml: not a city
    assert deployment.cities() == ["toda", "warabi"]
    assert deployment.paths("warabi").home == deployment.root / "cities" / "warabi"
    with pytest.raises(DeploymentError, match="no city 'kawaguchi'"):
        deployment.paths("kawaguchi")
    with pytest.raises(DeploymentError, match="not a city name"):
        deployment.paths("../toda")
    bad = Deployment.from_env(tmp_path / "bad")
    bad.add_city("ok")
    (bad.cities_dir / "Bad-Name").mkdir()
    (bad.cities_dir / "Bad-Name" / "city.toml").write_text("", encoding="utf-8")
    with pytest.raises(DeploymentError, match="Bad-Name"):
        bad.cities()
    assert Deployment.from_env("") is None


def test_one_code_location_holds_each_citys_own_graph_jobs_schedules_and_sensors(defs, paths):
    single = build_definitions(paths)
    single_keys = single.resolve_asset_graph().get_all_asset_keys()
    keys = defs.resolve_asset_graph().get_all_asset_keys()
    assert keys == {k.with_prefix(c) for c in CITIES for k in single_keys}
    # deps stay inside the city: a city's model reads that city's marts
    graph = defs.resolve_asset_graph()
    for city in CITIES:
        parents = graph.get(dg.AssetKey([city, "models", "futoukou_risk"])).parent_keys
        assert parents and {p.path[0] for p in parents} == {city}
    checks = {k.asset_key.path[0] for k in defs.resolve_asset_graph().asset_check_keys}
    assert checks == set(CITIES)
    repo = defs.get_repository_def()
    single_repo = single.get_repository_def()
    assert {s.name for s in repo.schedule_defs} == {f"{c}__{s.name}" for c in CITIES for s in single_repo.schedule_defs}
    assert {s.name for s in repo.sensor_defs} == {f"{c}__{s.name}" for c in CITIES for s in single_repo.sensor_defs
                                                  if s.name != "run_failure_alerts"} | {"run_failure_alerts"}
    for city in CITIES:
        job = defs.resolve_job_def(f"{city}__nightly_refresh_job")
        assert job.tags[CITY_TAG] == city and job.tags[WRITER_TAG] == "warehouse"
        selected = job.asset_layer.selected_asset_keys
        assert {k.path[0] for k in selected} == {city}
        assert dg.AssetKey([city, "models", "source_ablation"]) not in selected
        assert dg.AssetKey([city, "outputs", "support_effects"]) not in selected  # weekly
        single_nightly = single.resolve_job_def("nightly_refresh_job").asset_layer.selected_asset_keys
        assert selected == {k.with_prefix(city) for k in single_nightly}
        auto = repo.get_sensor_def(f"{city}__automation_sensor")
        assert auto.run_tags[CITY_TAG] == city
    # the forced yearly retrain addresses the model's op by the same name in every city's job
    [request] = defs.resolve_schedule_def("warabi__yearly_retrain").evaluate_tick(
        dg.build_schedule_context(scheduled_execution_time=dt.datetime(2027, 5, 15, 2, tzinfo=TOKYO))).run_requests
    op_names = {n.name for n in defs.resolve_job_def("warabi__retrain_job").nodes}
    assert set(request.run_config["ops"]) <= op_names


def test_a_citys_landing_sensor_sees_its_own_landing_zone_only(defs, deployment):
    _land_school(deployment.paths("warabi"), *SCHOOLS["warabi"])
    resources = {"toda": defs.resources["toda"]}
    for city, expected in (("toda", []), ("warabi", [[dg.AssetKey(["warabi", "staging", "school_master"])]])):
        sensor = defs.resolve_sensor_def(f"{city}__landing_zone_sensor")
        with dg.build_sensor_context(resources=resources) as ctx:
            result = sensor.evaluate_tick(ctx)
        assert [r.asset_selection for r in result.run_requests] == expected
        assert all(r.tags[CITY_TAG] == city for r in result.run_requests)


def test_the_morning_rescoring_of_a_city_reads_that_citys_calendar(defs, deployment):
    # warabi closes its schools on 2026-11-02 (its calendar file); toda does not
    (deployment.paths("warabi").home / "school_calendar.toml").write_text(
        'closed = ["2026-11-02"]\n', encoding="utf-8")
    when = dt.datetime(2026, 11, 2, 6, 30, tzinfo=TOKYO)
    ticks = {}
    for city in CITIES:
        with dg.build_schedule_context(scheduled_execution_time=when,
                                       resources={"toda": defs.resources["toda"]}) as ctx:
            ticks[city] = defs.resolve_schedule_def(f"{city}__morning_rescoring").evaluate_tick(ctx)
    assert len(ticks["toda"].run_requests) == 1 and ticks["warabi"].run_requests == []


def test_each_run_writes_its_own_citys_warehouse_with_its_own_key(defs, deployment, monkeypatch):
    monkeypatch.delenv("TODA_PSEUDONYM_KEY", raising=False)
    from toda_platform.pseudonym import load_key

    for city in CITIES:
        paths = deployment.paths(city)
        load_key(paths.pseudonym_key_file, create=True)  # each city its own key
        _land_school(paths, *SCHOOLS[city])
    keys = {c: deployment.paths(c).pseudonym_key_file.read_bytes() for c in CITIES}
    assert keys["toda"] != keys["warabi"]
    instance = dg.DagsterInstance.ephemeral()
    for city in CITIES:
        job = defs.resolve_job_def(f"{city}__nightly_refresh_job")
        result = job.execute_in_process(instance=instance, asset_selection=[
            dg.AssetKey([city, "staging", "school_master"])])
        assert result.success
        assert result.dagster_run.tags[CITY_TAG] == city
    for city in CITIES:
        con = duckdb.connect(str(deployment.paths(city).warehouse), read_only=True)
        try:
            codes = [r[0] for r in con.execute("SELECT school_code FROM staging.school_master").fetchall()]
        finally:
            con.close()
        assert codes == [SCHOOLS[city][0]]
    # a run selecting two cities' assets is refused: it would need two warehouses
    both = [dg.AssetKey([c, "staging", "school_master"]) for c in CITIES]
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=both, raise_on_error=False)
    assert not result.success


def test_a_run_belongs_to_the_city_of_its_tag_or_of_its_assets():
    assert run_city({CITY_TAG: "warabi"}) == "warabi"
    assert run_city({}, [dg.AssetKey(["toda", "staging", "x"]), dg.AssetKey(["toda", "marts", "y"])]) == "toda"
    with pytest.raises(DeploymentError, match="one city only"):
        run_city({}, [dg.AssetKey(["toda", "a"]), dg.AssetKey(["warabi", "a"])])
    with pytest.raises(DeploymentError, match="names no city"):
        run_city({}, [])
    assert Scope("warabi").tags == {WRITER_TAG: "warehouse", CITY_TAG: "warabi"}
    assert Scope().tags == {WRITER_TAG: "warehouse"}


def _dequeue(instance, queued: list[dg.DagsterRun]) -> list[dg.DagsterRun]:
    """What the daemon's run queue starts from ``queued`` (oldest first), under the instance's
    limits, with Dagster's own counter of tag limits."""
    from dagster._utils.tags import TagConcurrencyLimitsCounter

    config = instance.get_concurrency_config().run_queue_config  # what the daemon reads
    counter = TagConcurrencyLimitsCounter(list(config.tag_concurrency_limits), [])
    started = []
    for run in queued:
        if len(started) >= config.max_concurrent_runs or counter.is_blocked(run):
            continue
        counter.update_counters_with_launched_item(run)
        started.append(run)
    return started


def test_the_run_queue_lets_one_writer_per_city_and_many_cities_go_at_once(deployment, monkeypatch):
    deployment.add_city("kawaguchi")
    prepare_deployment_home(deployment)
    text = (deployment.dagster_home / "dagster.yaml").read_text(encoding="utf-8")
    assert text.startswith("# Written by `toda`")
    limits = yaml.safe_load(text)["concurrency"]["runs"]
    assert limits["max_concurrent_runs"] == 3
    assert limits["tag_concurrency_limits"] == [
        {"key": CITY_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1}]
    instance = dg.DagsterInstance.from_config(str(deployment.dagster_home))
    try:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"

        def run(city, n):
            return dg.DagsterRun(job_name=f"{city}__nightly_refresh_job", run_id=f"{city}-{n}",
                                 tags={CITY_TAG: city, WRITER_TAG: "warehouse"})

        queued = [run("toda", 1), run("toda", 2), run("warabi", 1), run("kawaguchi", 1), run("warabi", 2)]
        assert [r.run_id for r in _dequeue(instance, queued)] == ["toda-1", "warabi-1", "kawaguchi-1"]
    finally:
        instance.dispose()
    # at most as many runs as asked over all cities
    monkeypatch.setenv("TODA_MAX_CONCURRENT_RUNS", "2")
    assert yaml.safe_load(deployment_dagster_yaml(deployment))["concurrency"]["runs"]["max_concurrent_runs"] == 2


def test_the_same_definitions_under_kubernetes_each_run_a_job(deployment, defs):
    """dagster-k8s's K8sRunLauncher: the instance config validates against the launcher's own
    schema (building it needs a cluster), and the definitions load unchanged with it — each run
    one pod, its steps in-process as on one machine."""
    from dagster._config import process_config
    from dagster_k8s import K8sRunLauncher

    launcher = k8s_run_launcher(deployment, image="registry.example/toda-platform:1")
    config = yaml.safe_load(deployment_dagster_yaml(deployment, run_launcher=launcher))
    assert config["run_launcher"]["module"] == "dagster_k8s"
    assert getattr(__import__("dagster_k8s"), config["run_launcher"]["class"]) is K8sRunLauncher
    result = process_config(K8sRunLauncher.config_type(), config["run_launcher"]["config"])
    assert result.success, result.errors
    assert "TODA_DEPLOYMENT=/srv/toda" in result.value["env_vars"]
    # the instance schema accepts the whole file (run queue and launcher together)
    from dagster._core.instance.config import dagster_instance_config

    (deployment.dagster_home).mkdir(parents=True, exist_ok=True)
    (deployment.dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    checked, _ = dagster_instance_config(str(deployment.dagster_home))
    assert checked["run_launcher"]["class"] == "K8sRunLauncher"
    assert defs.resolve_job_def("toda__nightly_refresh_job").executor_def.name == "in_process"


def test_the_workspace_loads_the_deployment_through_the_dagster_cli(deployment):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "TODA_DEPLOYMENT": str(deployment.root), "DAGSTER_HOME": str(deployment.root)}
    env.pop("TODA_HOME", None)
    dagster = Path(sys.executable).parent / "dagster"
    out = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_cli_adds_and_lists_cities(tmp_path):
    from click.testing import CliRunner

    from toda_platform.cli import main

    root = tmp_path / "d"
    runner = CliRunner()
    assert runner.invoke(main, ["deployment", "add-city", "--deployment", str(root), "warabi"]).exit_code == 0
    bad = runner.invoke(main, ["deployment", "add-city", "--deployment", str(root), "Warabi City"])
    assert bad.exit_code != 0 and "not a city name" in bad.output
    listed = runner.invoke(main, ["deployment", "list", "--deployment", str(root)])
    assert listed.output.split("\t")[0] == "warabi" and "no warehouse yet" in listed.output


def test_a_failed_run_is_alerted_in_its_own_city(deployment):
    from assets.sensors import run_failure_alerts
    from resources.toda import TodaHome
    from tests.test_alerts import broken
    from toda_platform import alerts

    instance = dg.DagsterInstance.ephemeral()
    job = dg.define_asset_job("warabi__nightly_refresh_job", selection=[broken], tags={CITY_TAG: "warabi"})
    result = dg.Definitions(assets=[broken], jobs=[job]).resolve_job_def(job.name).execute_in_process(
        instance=instance, raise_on_error=False)
    assert not result.success
    ctx = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alerts", dagster_instance=instance, dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(), resources={"toda": TodaHome(deployment=str(deployment.root))})
    run_failure_alerts(ctx)
    [alert] = alerts.listed(deployment.paths("warabi"))
    assert alert["job_name"] == "warabi__nightly_refresh_job"
    assert alerts.listed(deployment.paths("toda")) == []


def test_refreshes_started_at_once_on_a_fresh_dagster_home_all_open_the_instance(tmp_path):
    """`toda deployment refresh` of several cities at once, on a fresh deployment: without the lock
    in `open_instance`, 2 of 4 processes failed creating the same SQLite storage (alembic)."""
    import subprocess
    import sys

    home = tmp_path / "dagster"
    home.mkdir()
    code = ("from pathlib import Path; from toda_platform.definitions import open_instance; "
            f"print('ok', open_instance(Path({str(home)!r})).get_runs_count())")
    env = {**os.environ, "DAGSTER_HOME": str(home), "TODA_HOME": str(tmp_path / "home"), "TODA_DEMO": "1",
           "TODA_PSEUDONYM_KEY": "k" * 40}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err[-400:] for _, err in outs]
    assert all(out.strip() == "ok 0" for out, _ in outs)
