"""The code location loads, in-process and through the `dagster` CLI as the UI would load it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from toda_platform.definitions import build_definitions

ROOT = Path(__file__).resolve().parents[1]


def test_definitions_resolve(paths):
    defs = build_definitions(paths)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert "staging/attendance_daily" in keys and len([k for k in keys if k.startswith("staging/")]) == 23
    assert defs.resolve_sensor_def("landing_zone_sensor") is not None
    schedule = defs.resolve_schedule_def("nightly_refresh")
    assert schedule.execution_timezone == "Asia/Tokyo"


def test_dagster_cli_validates_the_workspace(paths):
    env = {**os.environ, "TODA_HOME": str(paths.home), "DAGSTER_HOME": str(paths.home)}
    dagster = Path(sys.executable).parent / "dagster"
    out = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr


def test_sensor_requests_a_run_for_a_settled_new_file(paths, monkeypatch):
    import assets.sensors
    from tests.conftest import write_csv

    landing = paths.landing_dir("school_master")
    f = write_csv(landing / "学校一覧.csv", ["学校コード", "学校名", "学校種", "学区"],
                  [["B211222400015", "戸田第一小学校", "小", "上戸田"]], encoding="cp932",
                  mtime=1_600_000_000)
    defs = build_definitions(paths)
    sensor = defs.resolve_sensor_def("landing_zone_sensor")
    with dg.build_sensor_context(resources={"toda": build_definitions(paths).resources["toda"]}) as ctx:
        result = sensor.evaluate_tick(ctx)
    assert [r.asset_selection for r in result.run_requests] == [[dg.AssetKey(["staging", "school_master"])]]
    # nothing new while the run asked for is in flight: no run; a changed file: a new run
    monkeypatch.setattr(assets.sensors, "_landing_runs", lambda context, scope=None: {"school_master"})
    with dg.build_sensor_context(cursor=result.cursor, resources={"toda": defs.resources["toda"]}) as ctx:
        assert sensor.evaluate_tick(ctx).run_requests == []
    os.utime(f, (1_600_000_100, 1_600_000_100))
    with dg.build_sensor_context(cursor=result.cursor, resources={"toda": defs.resources["toda"]}) as ctx:
        assert len(sensor.evaluate_tick(ctx).run_requests) == 1


def test_the_warehouse_connection_is_closed_when_the_block_raises(tmp_path):
    import duckdb
    import pytest

    from resources.toda import Warehouse

    db = tmp_path / "w.duckdb"
    wh = Warehouse(database=str(db))
    with wh.get_connection() as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS x")
    with pytest.raises(ValueError):
        with wh.get_connection() as con:
            con.execute("INSERT INTO t VALUES (2)")
            raise ValueError("an asset fails")
    # a read-only reader in the same process (a different configuration) can open the file
    reader = duckdb.connect(str(db), read_only=True)
    assert reader.execute("SELECT sum(x) FROM t").fetchone()[0] == 3
    reader.close()
