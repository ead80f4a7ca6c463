"""Writers never collide: two runs started at the same moment in two processes (a sensor's run
and `toda refresh`, say) staging overlapping sources into one warehouse both finish; each file
is applied once, and the second run found the first one's lock and waited for it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from tests.conftest import TEST_KEY
from toda_platform.settings import Paths
from synthcity import CityConfig, generate_city

ROOT = Path(__file__).resolve().parents[1]
TINY = CityConfig(pupils=300, elementary_schools=1, junior_high_schools=1, years=2)

RUN = """
import json, sys, time
import dagster as dg
from toda_platform.definitions import build_definitions
from toda_platform.settings import Paths

home, start, sources = sys.argv[1], float(sys.argv[2]), sys.argv[3].split(",")
defs = build_definitions(Paths.from_env(home))
job = defs.resolve_implicit_global_asset_job_def().get_subset(
    asset_selection={dg.AssetKey(["staging", s]) for s in sources})
while time.time() < start:  # both processes start at the same moment
    time.sleep(0.005)
result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
failed = [e.step_key for e in result.all_events if e.is_step_failure]
print("RESULT " + json.dumps({"success": result.success, "failed": failed}), flush=True)
"""

SENSOR_RUN = "school_master,pupil_registry,attendance_daily"
REFRESH_RUN = "school_master,pupil_registry,attendance_daily,nurse_office_visits"


def test_two_runs_started_together_on_one_warehouse_both_finish(tmp_path):
    home = tmp_path / "toda"
    summary = generate_city(home, TINY, progress=False)
    env = {**os.environ, "TODA_HOME": str(home), "TODA_PSEUDONYM_KEY": TEST_KEY, "TODA_SETTLE_SECONDS": "0",
           "DAGSTER_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    start = time.time() + 25  # after both processes imported Dagster and built the definitions
    procs = [subprocess.Popen([sys.executable, "-c", RUN, str(home), str(start), sources], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for sources in (SENSOR_RUN, REFRESH_RUN)]
    outputs = [p.communicate(timeout=900) for p in procs]
    results = []
    for out, err in outputs:
        line = next((ln for ln in out.splitlines() if ln.startswith("RESULT ")), None)
        assert line is not None, err[-3000:]
        results.append((json.loads(line[len("RESULT "):]), err))
    for result, err in results:
        assert result == {"success": True, "failed": []}, err[-3000:]
    # the second writer met the first one's lock and waited (not a lucky sequential run)
    assert any("is locked by PID" in err for _, err in results)

    con = duckdb.connect(str(Paths.from_env(home).warehouse), read_only=True)
    try:
        for source in ("school_master", "pupil_registry", "attendance_daily", "nurse_office_visits"):
            rows = con.execute(f"SELECT count(*) FROM staging.{source}").fetchone()[0]
            assert rows == summary.expected_rows[source], source
            applied, files = con.execute(  # no file applied twice
                "SELECT count(*), count(DISTINCT file_name) FROM staging.file_manifest "
                "WHERE source_key = ? AND outcome = 'applied'", [source]).fetchone()
            assert applied == files > 0, source
    finally:
        con.close()
