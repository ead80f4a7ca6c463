"""A failed run becomes an open alert (run, job, assets, failed check, message) with no data
value in it; `toda alerts` lists and closes them."""

from __future__ import annotations

import dagster as dg
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from assets.sensors import run_failure_alerts
from resources.toda import TodaHome
from toda_platform import alerts
from toda_platform.cli import main

NAME, NUMBER, PSEUDONYM = "山田太郎", "202400123456", "9f86d081884c7d659a2feaa0c55ad015"


@dg.asset(key=["staging", "upstream"])
def upstream() -> None:
    return None


@dg.asset_check(asset=upstream, blocking=True)
def table_valid() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR)


@dg.asset(key=["marts", "broken"])
def broken() -> None:
    raise ValueError(f"pupil {NAME} ({NUMBER}, {PSEUDONYM}) has no school\nsecond line")


@dg.asset(key=["marts", "after_check"], deps=[upstream])
def after_check() -> None:
    return None


def _failed_run(instance, selection):
    defs = dg.Definitions(assets=[upstream, broken, after_check], asset_checks=[table_valid],
                          jobs=[dg.define_asset_job("nightly_refresh_job", selection=selection)])
    result = defs.resolve_job_def("nightly_refresh_job").execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    return result


def _sense(paths, instance, result):
    ctx = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alerts", dagster_instance=instance, dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(), resources={"toda": TodaHome(home=str(paths.home))})
    run_failure_alerts(ctx)


def test_a_failing_step_records_one_alert_without_data_values(paths):
    instance = dg.DagsterInstance.ephemeral()
    result = _failed_run(instance, dg.AssetSelection.assets(broken))
    _sense(paths, instance, result)
    _sense(paths, instance, result)  # a retried tick: still one alert
    [alert] = alerts.listed(paths)
    assert alert["run_id"] == result.run_id and alert["job_name"] == "nightly_refresh_job"
    assert alert["assets"] == "marts/broken" and alert["failed_check"] == ""
    assert alert["error"] == "ValueError" and alert["status"] == "open"
    assert alert["message"] == "pupil … (<hex>, <hex>) has no school"
    stored = paths.ops_db.read_bytes()
    for value in (NAME, NUMBER, PSEUDONYM):
        assert value.encode() not in stored
    assert "second line" not in alert["message"]


def test_a_failed_blocking_check_is_named(paths):
    instance = dg.DagsterInstance.ephemeral()
    result = _failed_run(instance, dg.AssetSelection.assets(upstream, after_check))
    _sense(paths, instance, result)
    [alert] = alerts.listed(paths)
    assert alert["failed_check"] == "staging/upstream:table_valid"
    assert "staging/upstream" in alert["assets"]


def test_alerts_are_listed_and_closed_from_the_cli(paths):
    alerts.record(paths, alerts.Alert(run_id="r1", job_name="retrain_job", assets=["models/futoukou_risk"],
                                      error="WarehouseLocked", message="warehouse.duckdb is still locked"))
    runner = CliRunner()
    out = runner.invoke(main, ["alerts", "--home", str(paths.home)])
    assert out.exit_code == 0 and "retrain_job" in out.output and "1 open alert(s)" in out.output
    [a] = alerts.listed(paths)
    assert runner.invoke(main, ["alerts", "close", str(a["id"]), "--home", str(paths.home),
                                "--note", "closed the notebook"]).exit_code == 0
    assert alerts.listed(paths) == []
    [closed] = alerts.listed(paths, status="closed")
    assert closed["note"] == "closed the notebook" and closed["closed_by"]
    assert runner.invoke(main, ["alerts", "close", str(a["id"]), "--home", str(paths.home),
                                "--note", "again"]).exit_code != 0


@settings(max_examples=200, deadline=None)
@given(st.text(), st.text(alphabet="0123456789", min_size=6, max_size=20),
       st.text(alphabet="あいうえお山田太郎花子ヤマダ", min_size=1, max_size=10))
def test_no_personal_value_survives_safe_message(prefix, number, name):
    message = alerts.safe_message(f"{prefix} {name} {number}")
    assert name not in message and number not in message and len(message) <= alerts.MAX_MESSAGE


def test_alert_times_are_shown_in_the_citys_time(paths):
    from datetime import datetime, timezone

    alerts.record(paths, alerts.Alert(run_id="r2", job_name="nightly_refresh_job", error="X", message="m"),
                  now=datetime(2026, 11, 30, 12, 5, 40, tzinfo=timezone.utc))
    [a] = alerts.listed(paths)
    assert a["raised_at"] == "2026-11-30T12:05:40+00:00"  # stored in UTC
    assert a["raised_at_jst"] == "2026-11-30 21:05 JST"
    out = CliRunner().invoke(main, ["alerts", "--home", str(paths.home)])
    assert "2026-11-30 21:05 JST" in out.output
    assert alerts.in_tokyo("2026-12-31T15:00:00") == "2027-01-01 00:00 JST"  # a naive stamp is UTC
