"""A city that does not export every source: its city file leaves those sections out.

A small generated city whose file has no RST, AIGROW or Q-U section (and whose departments send
no such files) stages every source and builds the pupil table; a file landed by mistake for a
source the city does not export is quarantined with a message that says so, and nothing else
is held back.
"""

from __future__ import annotations

import re
import shutil

import dagster as dg
import duckdb
import pytest

from assets.marts import FEATURES_KEY, LABELS_KEY, partition_range_tags
from synthcity import CityConfig, generate_city
from toda_platform.definitions import build_definitions
from toda_platform.settings import Paths

LEFT_OUT = ("rst", "aigrow", "qu_survey")
SMALL = CityConfig(pupils=300, elementary_schools=2, junior_high_schools=1, years=2)


def without_sections(toml: str, keys) -> str:
    """The city file's text without the [sources.KEY] tables (and their sub-tables)."""
    out, skipping = [], False
    for line in toml.splitlines(keepends=True):
        header = re.match(r"\[([^\]]+)\]", line)
        if header:
            name = header.group(1)
            skipping = any(name == f"sources.{k}" or name.startswith(f"sources.{k}.") for k in keys)
        if not skipping:
            out.append(line)
    return "".join(out)


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("partial") / "home"
    mp.setenv("TODA_HOME", str(home))
    mp.setenv("TODA_PSEUDONYM_KEY", "partial-city-key")
    mp.setenv("TODA_SETTLE_SECONDS", "0")
    generate_city(home, SMALL, progress=False)
    paths = Paths.from_env(home)
    toml = paths.home / "city.toml"
    toml.write_text(without_sections(toml.read_text(encoding="utf-8"), LEFT_OUT), encoding="utf-8")
    stray = None
    for key in LEFT_OUT:  # the departments send nothing for them …
        files = sorted(paths.landing_dir(key).glob("*.csv"))
        if key == "rst":  # … but one RST file lands by mistake
            stray = files[0].name
            for f in files[1:]:
                f.unlink()
        else:
            shutil.rmtree(paths.landing_dir(key))
    defs = build_definitions(paths)
    selection = (dg.AssetSelection.groups("sources") | dg.AssetSelection.assets(FEATURES_KEY, LABELS_KEY))
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
        asset_selection=sorted(selection.resolve(defs.resolve_asset_graph())), tags=partition_range_tags())
    yield paths, result, stray
    mp.undo()


def test_the_city_file_without_those_sections_loads_and_says_what_is_not_exported(city):
    paths, _, _ = city
    assert set(paths.city.not_exported) == set(LEFT_OUT)


def test_every_source_stages_and_the_pupil_table_builds(city):
    paths, result, _ = city
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    materialised = {e.asset_key for e in result.get_asset_materialization_events()}
    assert FEATURES_KEY in materialised and LABELS_KEY in materialised
    checks = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    failed = [(c.asset_key.to_user_string(), c.check_name) for c in checks
              if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR]
    assert failed == []
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        for key in LEFT_OUT:  # their tables exist, empty
            assert con.execute(f"SELECT count(*) FROM staging.{key}").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM staging.attendance_daily").fetchone()[0] > 10_000
        pupils, dates = con.execute(
            "SELECT count(DISTINCT pupil_id), count(DISTINCT as_of_date) FROM marts.pupil_features").fetchone()
        assert pupils >= 250 and dates >= 10
    finally:
        con.close()


def test_a_file_landed_for_a_source_the_city_does_not_export_is_quarantined_with_the_reason(city):
    paths, _, stray = city
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        rows = con.execute("SELECT file_name, outcome, message FROM staging.file_manifest WHERE source_key = 'rst'"
                           ).fetchall()
    finally:
        con.close()
    assert [(name, outcome) for name, outcome, _ in rows] == [(stray, "rejected")]
    assert "no section [sources.rst]" in rows[0][2] and "does not export" in rows[0][2]
    assert (paths.quarantine / "rst" / stray).exists()
    assert not (paths.landing_dir("rst") / stray).exists()  # out of landing, kept in quarantine
