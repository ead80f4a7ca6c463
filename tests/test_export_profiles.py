"""The same pupils written by two cities' export profiles stage to the same rows.

One small population (same seed, same town) is written once with Toda's exports and once with
Warabi's (other headers and encodings, 和暦 where Toda writes ISO, 性別 1/2, attendance as a
monthly grid of marks). Each home is staged with only its own city file (the ``city.toml`` the
generator copied in) and the same pseudonym key: the staging rows are equal.
"""

from __future__ import annotations

from datetime import date

import duckdb
import pytest
from click.testing import CliRunner

from synthcity import PROFILES, CityConfig, generate_city
from toda_platform.city import load_city
from toda_platform.ingest import ingest_source
from toda_platform.settings import Paths

KEY = b"one-key-for-both-homes"
# one school year up to July: April-June attendance, a duplicate and a corrected re-export
SAME = CityConfig(pupils=300, elementary_schools=2, junior_high_schools=1, years=1, today=date(2026, 7, 10))
SOURCES = ("school_master", "pupil_registry", "attendance_daily", "health_checkup", "nurse_office_visits",
           "bullying_records")
NOT_IN_A_GRID = ("room", "sub_reason")  # one mark per day: a grid has no room or sub-reason


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    out = {}
    for city in ("toda", "warabi"):
        home = tmp_path_factory.mktemp(city) / "home"
        summary = generate_city(home, SAME, progress=False, city_file=city)
        paths = Paths.from_env(home)
        assert paths.city.name == city  # the home says which city's exports it holds
        con = duckdb.connect(str(paths.warehouse))
        outcomes = {}
        for key in SOURCES:
            report = ingest_source(con, paths.city.spec(key), paths, KEY)
            outcomes[key] = sorted({f.outcome for f in report.files})
        out[city] = (con, summary, outcomes, paths)
    yield out
    for con, *_ in out.values():
        con.close()


def _rows(con, key, drop=()):
    cols = [r[0] for r in con.execute(f"DESCRIBE staging.{key}").fetchall()
            if r[0] not in ("_file_sha256", "_line", *drop)]
    return con.execute(f"SELECT {', '.join(chr(34) + c + chr(34) for c in cols)} FROM staging.{key} "
                       f"ORDER BY ALL").fetchall()


def test_the_exports_really_differ(staged):
    toda, warabi = staged["toda"][3], staged["warabi"][3]
    t = sorted(p.name for p in toda.landing_dir("attendance_daily").glob("*.csv"))
    w = sorted(p.name for p in warabi.landing_dir("attendance_daily").glob("*.csv"))
    assert t[0] == "出欠_2026-04.csv" and w[0] == "出席簿_2026-04.csv"
    grid = (warabi.landing_dir("attendance_daily") / "出席簿_2026-05.csv").read_bytes().decode("cp932")
    assert grid.startswith("学校番号,児童生徒ID,対象月,1日,2日,") and ",令和8年5月," in grid
    reg_t = next(toda.landing_dir("pupil_registry").glob("*.csv")).read_bytes()
    reg_w = next(warabi.landing_dir("pupil_registry").glob("*.csv")).read_bytes()
    assert reg_t.decode("cp932").startswith("年度,学籍番号,宛名番号,")
    assert reg_w.decode("utf-8").startswith("年度,児童生徒ID,住民番号,")


def test_every_file_of_both_cities_stages(staged):
    for city, (_, summary, outcomes, _) in staged.items():
        assert outcomes["attendance_daily"] == ["applied", "duplicate", "superseded"], (city, outcomes)
        assert all(set(o) <= {"applied", "duplicate", "superseded"} for o in outcomes.values()), (city, outcomes)


@pytest.mark.parametrize("key", SOURCES)
def test_the_same_pupils_give_the_same_staging_rows(staged, key):
    drop = NOT_IN_A_GRID if key == "attendance_daily" else ()
    toda, warabi = _rows(staged["toda"][0], key, drop), _rows(staged["warabi"][0], key, drop)
    assert len(toda) > 0
    assert len(toda) == staged["toda"][1].expected_rows[key] == staged["warabi"][1].expected_rows[key]
    assert toda == warabi


def test_the_grid_has_no_room_or_sub_reason_and_toda_has_some(staged):
    q = "SELECT count(room), count(sub_reason), count(*) FROM staging.attendance_daily"
    t_room, t_reason, t_rows = staged["toda"][0].execute(q).fetchone()
    w_room, w_reason, w_rows = staged["warabi"][0].execute(q).fetchone()
    assert t_rows == w_rows and t_room > 0 and t_reason > 0 and (w_room, w_reason) == (0, 0)


def test_generate_profile_writes_the_profile_and_its_city_file(tmp_path):
    from toda_platform.cli import main

    home = tmp_path / "w"
    result = CliRunner().invoke(main, ["generate", "--home", str(home), "--profile", "warabi", "--quiet",
                                       "--pupils", "300", "--elementary-schools", "2", "--years", "1",
                                       "--junior-high-schools", "1", "--today", "2026-06-10"])
    assert result.exit_code == 0, result.output
    paths = Paths.from_env(home)
    assert paths.city_file.read_bytes() == load_city("warabi").file.read_bytes()
    assert paths.city.name == "warabi" and paths.city.title_ja == "蕨市"
    assert "出席簿_2026-04.csv" in {p.name for p in paths.landing_dir("attendance_daily").glob("*.csv")}
    # Warabi's own calendar: its spring break runs to 04-06 (Toda's to 04-05), so Monday 2026-04-06
    # is no school day in Warabi; the 7th is
    april = (paths.landing_dir("attendance_daily") / "出席簿_2026-04.csv").read_bytes().decode("cp932")
    rows = [line.split(",") for line in april.splitlines()]
    day6, day7 = rows[0].index("6日"), rows[0].index("7日")
    assert {r[day6] for r in rows[1:]} == {""} and "／" in {r[day7] for r in rows[1:]}
    assert paths.city.pilot_schools == ("B111222301018", "B111222301025", "C111222305016")
    master = (paths.landing_dir("school_master") / "学校一覧表.csv").read_text(encoding="utf-8-sig")
    assert "B111222301018,蕨北小学校" in master and "C111222305016,蕨第一中学校" in master
    help_text = CliRunner().invoke(main, ["generate", "--help"]).output
    assert "[toda|warabi]" in help_text and "[default: toda]" in help_text
    assert list(PROFILES) == ["toda", "warabi"]
    assert PROFILES["warabi"].pupils / PROFILES["toda"].pupils == pytest.approx(0.4)


def test_the_platform_core_does_not_import_the_generator():
    """synthcity is a tool beside the platform: only the CLI (generate, demo), tests and bench use it."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    importers = []
    for folder in ("toda_platform", "assets", "ml", "quality", "resources", "portal"):
        for path in (root / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                if any(n == "synthcity" or n.startswith("synthcity.") for n in names):
                    importers.append(str(path.relative_to(root)))
    assert sorted(set(importers)) == ["toda_platform/cli.py"]


def test_an_explicit_profile_replaces_the_homes_city_and_none_keeps_it(tmp_path):
    from toda_platform.cli import main

    small = ["--pupils", "300", "--elementary-schools", "2", "--junior-high-schools", "1", "--years", "1",
             "--today", "2026-06-10", "--quiet"]
    home = tmp_path / "h"
    assert CliRunner().invoke(main, ["generate", "--home", str(home), *small]).exit_code == 0
    paths = Paths.from_env(home)
    assert paths.city.name == "toda"
    assert CliRunner().invoke(main, ["generate", "--home", str(home), "--profile", "warabi", *small]).exit_code == 0
    assert paths.city.name == "warabi"
    assert "出席簿_2026-04.csv" in {p.name for p in paths.landing_dir("attendance_daily").glob("*.csv")}
    assert not list(paths.landing_dir("attendance_daily").glob("出欠_*.csv"))  # Toda's files were cleared
    # without --profile the home's own city file is kept (a deployment's city named by its home)
    assert CliRunner().invoke(main, ["generate", "--home", str(home), *small]).exit_code == 0
    assert paths.city.name == "warabi"
