"""The landing sensor starts from what the file manifest holds, and stages reference sources
before the files checked against them when both arrive together."""

from __future__ import annotations

import json
import os

import dagster as dg
import duckdb

from assets.sources import staging_key
from tests.conftest import write_csv
from toda_platform.city import load_city
from toda_platform.definitions import build_definitions
from toda_platform.ingest import ingest_source

CATALOGUE = load_city("toda").specs  # Toda's specs: what each source means and how Toda writes it

MASTER_HEADER = ["学校コード", "学校名", "学校種", "学区"]


def _master(paths, name="学校一覧.csv", mtime=1_600_000_000):
    return write_csv(paths.landing_dir("school_master") / name, MASTER_HEADER,
                     [["B211222400015", "戸田第一小学校", "小", "上戸田"]], encoding="cp932", mtime=mtime)


def _tick(defs, cursor=None):
    sensor = defs.resolve_sensor_def("landing_zone_sensor")
    with dg.build_sensor_context(cursor=cursor, resources={"toda": defs.resources["toda"]}) as ctx:
        return sensor.evaluate_tick(ctx)


def test_the_first_tick_starts_nothing_for_files_the_manifest_holds(paths, key):
    _master(paths)
    con = duckdb.connect(str(paths.warehouse))
    try:
        report = ingest_source(con, CATALOGUE["school_master"], paths, key)
    finally:
        con.close()
    assert [f.outcome for f in report.files] == ["applied"]
    defs = build_definitions(paths)

    first = _tick(defs)  # no cursor yet: the state after `toda demo` when the UI opens
    assert first.run_requests == [] and "manifest has not seen" in first.skip_message
    assert set(json.loads(first.cursor)) == {"school_master"}

    # the same file touched (a re-export with the same name): new again
    os.utime(paths.landing_dir("school_master") / "学校一覧.csv", (1_600_000_500, 1_600_000_500))
    [again] = _tick(defs, first.cursor).run_requests
    assert again.asset_selection == [staging_key("school_master")]


def test_sources_arriving_together_are_one_run_with_the_reference_sources_first(paths):
    _master(paths)
    write_csv(paths.landing_dir("attendance_daily") / "出欠_202611.csv", ["x"], [["1"]], mtime=1_600_000_000)
    write_csv(paths.landing_dir("pupil_registry") / "学齢簿.csv", ["x"], [["1"]], mtime=1_600_000_000)
    defs = build_definitions(paths)
    [request] = _tick(defs).run_requests
    assert set(request.asset_selection) == {staging_key(k) for k in ("school_master", "pupil_registry",
                                                                    "attendance_daily")}
    assert request.tags["toda/writer"] == "warehouse"

    from dagster._core.execution.api import create_execution_plan

    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection=set(request.asset_selection))
    order = [s.key for s in create_execution_plan(job).get_steps_to_execute_in_topo_order()]
    staged = [s for s in order if s in ("staging__school_master", "staging__pupil_registry", "staging__attendance_daily")]
    assert staged.index("staging__school_master") < staged.index("staging__pupil_registry") \
        < staged.index("staging__attendance_daily")


def test_a_busy_warehouse_skips_the_tick_without_losing_the_files(paths, monkeypatch):
    import assets.sensors as sensors
    from toda_platform.warehouse import WarehouseLocked

    _master(paths)
    paths.warehouse.touch()

    def locked(*_a, **_k):
        raise WarehouseLocked("warehouse.duckdb is still locked by PID 1 (a run)")

    monkeypatch.setattr(sensors, "connect", locked)
    defs = build_definitions(paths)
    busy = _tick(defs)
    assert busy.run_requests == [] and "busy" in busy.skip_message and busy.cursor is None
    monkeypatch.undo()
    paths.warehouse.unlink()
    assert len(_tick(defs, busy.cursor).run_requests) == 1


def test_files_of_a_run_that_failed_are_asked_for_again_without_touching_the_folder(paths):
    """The cursor keeps the folders asked for until the manifest has seen their files: while a
    run for them is queued or running nothing more is asked; once none is left (it failed), the
    next tick asks again, under a run key of its own."""
    from toda_platform import landing_watch

    _master(paths)
    unseen = lambda: {}  # noqa: E731 - the manifest never saw the file (the run failed)
    first = landing_watch.evaluate(paths, {}, unseen)
    assert first.to_stage == ["school_master"] and first.cursor["pending"] == ["school_master"]
    while_running = landing_watch.evaluate(paths, first.cursor, unseen, running=lambda: {"school_master"})
    assert while_running.to_stage == [] and while_running.cursor["pending"] == ["school_master"]
    after_failure = landing_watch.evaluate(paths, while_running.cursor, unseen, running=lambda: set())
    assert after_failure.to_stage == ["school_master"] and after_failure.retried == ["school_master"]
    f = landing_watch.settled(paths, "school_master")[0]
    staged = lambda: {"school_master": {f.name: [(f.size, f.landed_at)]}}  # noqa: E731
    done = landing_watch.evaluate(paths, after_failure.cursor, staged, running=lambda: set())
    assert done.to_stage == [] and "pending" not in done.cursor


def test_the_sensor_asks_again_once_the_failed_run_is_over(paths):
    _master(paths)
    defs = build_definitions(paths)
    [first] = _tick(defs).run_requests
    assert first.tags["toda/landing_sources"] == "school_master"
    with dg.instance_for_test() as instance:
        sensor = defs.resolve_sensor_def("landing_zone_sensor")
        with dg.build_sensor_context(cursor=None, instance=instance, resources={"toda": defs.resources["toda"]}) as ctx:
            tick = sensor.evaluate_tick(ctx)
        [again_request] = tick.run_requests
        with dg.build_sensor_context(cursor=tick.cursor, instance=instance,
                                     resources={"toda": defs.resources["toda"]}) as ctx:
            retry = sensor.evaluate_tick(ctx)  # no run is queued or running: it failed
        [request] = retry.run_requests
        assert request.run_key != again_request.run_key and ":retry@" in request.run_key
        assert request.asset_selection == [staging_key("school_master")]
