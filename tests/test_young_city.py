"""A young city: two school years of history, only one of them completed (its long-absence
survey exists). There is not enough history for a model; everything else still runs, the run
is green, and `toda demo` says what is missing. Also: a new school year whose attendance has
not landed yet publishes no list for it."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest
from click.testing import CliRunner

from tests.test_marts_e2e import rows as query
from toda_platform.settings import Paths

NEEDS = "needs 2 completed school years (with their long-absence survey), has 1"


@pytest.fixture(scope="module")
def young(tmp_path_factory):
    """`toda demo --years 2` on a small city, through the command line."""
    from toda_platform.cli import main

    home = tmp_path_factory.mktemp("young") / "toda"
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {"TODA_HOME": str(home), "TODA_PSEUDONYM_KEY": "young-key", "COLUMNS": "200"}.items():
            mp.setenv(k, v)
        result = CliRunner().invoke(main, ["demo", "--home", str(home), "--with-ablation", "--years", "2", "--pupils", "300",
                                           "--elementary-schools", "1", "--junior-high-schools", "1"])
        yield Paths.from_env(home), result



def test_demo_of_a_young_city_exits_0_and_says_what_is_missing(young):
    paths, result = young
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"futoukou_risk: not trained: {NEEDS} (" in out
    assert "risk_scores: no risk list published" in out
    assert "The run failed" not in out


def test_everything_but_the_model_ran(young):
    paths, _ = young
    status = dict(query(paths, "SELECT asset, status FROM models.status"))
    assert set(status) == {"futoukou_risk", "source_ablation", "fairness_audit", "risk_scores"}
    assert NEEDS in status["futoukou_risk"] and NEEDS in status["source_ablation"]
    # the rest of the platform: staging, marts, known cases, 学校カルテ, hardship screen
    assert query(paths, "SELECT count(*) FROM marts.pupil_features")[0][0] > 0
    assert query(paths, "SELECT count(*) FROM outputs.school_karte")[0][0] > 0
    assert query(paths, "SELECT count(*) FROM outputs.hardship_screen")[0][0] > 0
    tables = {r[0] for r in query(paths, "SELECT table_schema || '.' || table_name FROM information_schema.tables")}
    assert "outputs.known_cases" in tables and "models.headline" not in tables
    assert "outputs.risk_scores" not in tables  # no list: nothing scored by a model that is not there


def test_a_new_year_without_attendance_publishes_no_list_for_it():
    from assets.models import _year_without_attendance

    con = duckdb.connect()
    con.execute("CREATE SCHEMA staging; CREATE TABLE staging.pupil_registry (school_year INTEGER)")
    con.execute("INSERT INTO staging.pupil_registry VALUES (2025), (2026)")
    said = _year_without_attendance(con, dt.date(2026, 3, 26))
    assert said.startswith("no risk list for school year 2026: it has no attendance yet") and "2026-03-26" in said
    assert _year_without_attendance(con, dt.date(2026, 4, 9)) is None  # its attendance has begun
    assert _year_without_attendance(con, None) is None
