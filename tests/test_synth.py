"""The synthetic city: deterministic, honest about time, faithful to the catalogue and to the
base rates it must reproduce. One small city (900 pupils, 2 elementary + 1 junior high, 3 years)
is generated a few times per module; every assertion is on values."""

from __future__ import annotations

import hashlib
import io
import json
import re
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from toda_platform import parsing
from toda_platform.catalogue import HEALTH_CHECKUP, QU_SURVEY
from toda_platform.city import load_city
from synthcity import LATE_FIELDS, CityConfig, generate_city
from synthcity.formats import format_date, format_grade, format_month, format_school_year
from synthcity.latent import BETA, GRADE_TARGETS, build_latent
from synthcity.population import build_population
from synthcity.schools import build_schools
from synthcity.writer import TYPOS

CATALOGUE = load_city("toda").specs  # Toda's specs: what each source means and how Toda writes it

SMALL = CityConfig(pupils=900, elementary_schools=2, junior_high_schools=1, years=3)
TODAY = SMALL.as_of
LATER = date(2026, 12, 18)  # same school year, six weeks on
TRUTH_COLUMNS = {"p_futoukou", "latent_risk", "futoukou", "futoukou_drawn", "family_hardship", "onset_date",
                 "practice_effect", "effect_multiplier"}
DATE_KINDS = ("date", "timestamp_date", "month")


@pytest.fixture(scope="module")
def homes(tmp_path_factory):
    """The same city twice, a later 'today' of it, and a city from another seed."""
    root = tmp_path_factory.mktemp("synth")
    out = {}
    for name, config in {"a": SMALL, "b": SMALL, "later": CityConfig(**{**SMALL.__dict__, "today": LATER}),
                         "other": CityConfig(**{**SMALL.__dict__, "seed": SMALL.seed + 1})}.items():
        summary = generate_city(root / name, config, progress=False)
        out[name] = (root / name, summary)
    return out


@pytest.fixture(scope="module")
def city(homes):
    return homes["a"]


@pytest.fixture(scope="module")
def truth(city):
    return pd.read_csv(city[0] / "truth" / "pupil_years.csv", dtype={"student_number": str})


def read(path: Path) -> pd.DataFrame:
    """A landed file as text cells, without its total row and blank lines."""
    text, _ = parsing.decode_bytes(path.read_bytes())
    frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skip_blank_lines=True)
    return frame[frame.iloc[:, 0] != "合計"]


def landed(home: Path, key: str) -> list[Path]:
    return sorted((home / "landing" / key).glob("*.csv"))


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "generation.json"}


# ---------------------------------------------------------------------------------------------
# Determinism


def test_same_seed_gives_the_same_bytes_and_times(homes):
    (a, sa), (b, sb) = homes["a"], homes["b"]
    assert digest(a) == digest(b)
    assert len(digest(a / "landing")) == sum(len(v) for v in sa.files.values())
    def mtimes(home):
        return {p.name: p.stat().st_mtime for p in (home / "landing").rglob("*.csv")}

    assert mtimes(a) == mtimes(b)
    assert (sa.files, sa.expected_rows, sa.duplicate_file, sa.corrected_file) == \
           (sb.files, sb.expected_rows, sb.duplicate_file, sb.corrected_file)


def test_another_seed_gives_another_city(homes):
    a, other = digest(homes["a"][0] / "landing"), digest(homes["other"][0] / "landing")
    shared = set(a) & set(other)
    assert len(shared) > 100
    same = [name for name in shared if a[name] == other[name]]
    assert len(same) <= 3, same  # at most a content-free file like the school list


# ---------------------------------------------------------------------------------------------
# The catalogue is the contract


def test_every_source_is_written_with_its_headers_and_file_names(city):
    home, summary = city
    assert sorted(p.name for p in (home / "landing").iterdir()) == sorted(CATALOGUE)
    for key, spec in CATALOGUE.items():
        files = landed(home, key)
        assert files and [p.name for p in files] == sorted(summary.files[key]), key
        prefix = spec.export.file_name.split("{period}")[0]
        assert all(p.name.startswith(prefix) for p in files), key
        headers = list(read(files[0]).columns)
        allowed = {h for c in spec.columns for h in c.headers}
        assert set(headers) <= allowed, (key, set(headers) - allowed)
        assert {c.header for c in spec.columns if c.required} <= set(headers), key
        assert not set(headers) & TRUTH_COLUMNS
        assert any(c.header in headers for c in spec.dropped_columns) == bool(spec.dropped_columns), key


def test_encodings_line_endings_total_rows_and_blank_lines(city):
    home, _ = city
    for key, spec in CATALOGUE.items():
        style = spec.export
        for path in landed(home, key)[:3]:
            data = path.read_bytes()
            assert data.startswith(b"\xef\xbb\xbf") == (style.encoding == "utf-8-sig"), path.name
            data.decode(style.encoding)
            if style.encoding == "cp932":
                assert data.count(b"\r\n") == data.count(b"\n"), path.name
            text = data.decode(style.encoding).replace("\r\n", "\n")
            assert text.endswith("\n" * (style.trailing_blank_lines + 1)), path.name
            assert not text.endswith("\n" * (style.trailing_blank_lines + 2)), path.name
            last = text.rstrip("\n").rsplit("\n", 1)[-1]
            assert last.startswith("合計,") == style.total_row, path.name


def test_total_row_sums_the_numeric_columns(city):
    home, _ = city
    path = landed(home, "long_absence_survey")[0]
    text = path.read_bytes().decode("cp932")
    body = read(path)
    total = next(line for line in text.splitlines() if line.startswith("合計,")).split(",")
    for i, column in enumerate(body.columns):
        if column in ("欠席日数", "病気", "不登校", "その他"):
            assert int(total[i]) == body[column].astype(int).sum()
        elif i > 0 and column in ("学校コード", "学籍番号", "学年", "主たる理由"):
            assert total[i] == ""


def test_cp932_files_hold_vendor_kanji_that_shift_jis_cannot_read(city):
    home, _ = city
    registry = landed(home, "pupil_registry")
    for path in registry:
        text = path.read_bytes().decode("cp932")
        assert "髙" in text or "﨑" in text
        with pytest.raises(UnicodeDecodeError):
            path.read_bytes().decode("shift_jis")
    infant = "".join(p.read_bytes().decode("cp932") for p in landed(home, "infant_checkup"))
    assert "髙" in infant or "﨑" in infant


def test_categories_are_written_as_raw_keys_of_the_value_map(city):
    home, _ = city
    for key, spec in CATALOGUE.items():
        frame = pd.concat([read(p) for p in landed(home, key)[:4]])
        for col in spec.columns:
            if col.kind in ("category", "bool") and col.header in frame:
                written = set(frame[col.header]) - {""}
                assert written <= set(col.values), (key, col.name, written - set(col.values))
            if col.kind == "multi" and col.header in frame:
                parts = {p for cell in frame[col.header] for p in cell.split("／") if p}
                assert parts <= set(col.values), (key, col.name)
    statuses = pd.concat([read(p) for p in landed(home, "attendance_daily")[:2]])["出欠"]
    assert statuses.isin(["出", "病", "事", "停", "忌", "チ", "早"]).mean() > 0.5  # short codes mostly


def test_formats_follow_the_export_style():
    d = date(2024, 4, 8)
    assert [format_date(d, s) for s in ("iso", "slash", "wareki_kanji", "wareki_letter", "wareki_letter_padded")] \
        == ["2024-04-08", "2024/4/8", "令和6年4月8日", "R6.4.8", "R06.04.08"]
    assert format_date(date(2019, 5, 1), "wareki_kanji") == "令和元年5月1日"
    assert format_date(date(2016, 5, 3), "wareki_letter") == "H28.5.3"
    assert format_month(date(2024, 5, 1), "wareki_kanji") == "令和6年5月"
    assert format_school_year(2019, "wareki_kanji") == "令和元年度"
    grades = ((3, "kanji"), (7, "kanji"), (9, "within_school"), (8, "bare_within_school"), (8, "citywide"))
    assert [format_grade(g, s) for g, s in grades] == ["小3", "中1", "3年", "2", "8"]
    for text in ("2024-04-08", "2024/4/8", "令和6年4月8日", "R6.4.8", "R06.04.08"):
        assert parsing.parse_date(text) == d


def test_messy_but_readable_values_appear(city):
    home, _ = city
    registry = pd.concat([read(p) for p in landed(home, "pupil_registry")])
    wide = registry["出席番号"].str.contains("[０-９]")
    assert 0.005 < wide.mean() < 0.1
    assert registry["ふりがな"].str.contains("[ｦ-ﾟ]").any()  # half-width katakana
    assert registry["生年月日"].str.match(r"^H\d").any()
    assert registry["年度"].map(parsing.normalise_text).str.match(r"^R\d$").all()  # 年度 in 和暦
    mood = pd.concat([read(p) for p in landed(home, "mood_checkin")[:3]])
    typed = mood["学籍番号"]
    assert typed.str.contains("[０-９]").any() and (typed != typed.str.strip()).any()
    assert mood["タイムスタンプ"].str.match(r"^\d{4}/\d\d/\d\d \d{1,2}:\d\d:\d\d$").all()


# ---------------------------------------------------------------------------------------------
# Honest time


def _dates_of(spec, frame: pd.DataFrame):
    for col in spec.columns:
        if col.kind in DATE_KINDS and col.header in frame:
            parse = parsing.parse_month if col.kind == "month" else parsing.parse_date
            for value in set(frame[col.header]) - {""}:
                yield col, parse(value)


def test_nothing_is_dated_after_today_and_each_file_covers_one_period(city):
    home, _ = city
    for key, spec in CATALOGUE.items():
        prefix = spec.export.file_name.split("{period}")[0]
        period_columns = [c for c in spec.columns if c.kind in DATE_KINDS and re.search(rf"\b{c.name}\b", spec.period)]
        for path in landed(home, key):
            period = path.stem.removeprefix(prefix).removesuffix(" (1)").removesuffix("_訂正")
            frame = read(path)
            for col, value in _dates_of(spec, frame):
                assert value <= TODAY, (path.name, col.name, value)
                if col in period_columns and spec.export.file_cadence == "monthly":
                    assert f"{value.year}-{value.month:02d}" == period, (path.name, value)
                elif col in period_columns:
                    assert str(value.year - (value.month < 4)) == period.split("-")[0], (path.name, value)


def test_the_survey_of_the_current_year_does_not_exist_yet(city):
    home, _ = city
    names = [p.name for p in landed(home, "long_absence_survey")]
    assert names == ["長期欠席調査_2024.csv", "長期欠席調査_2025.csv"]
    rounds = [p.name for p in landed(home, "qu_survey")]
    assert "QU_2026-1.csv" in rounds and "QU_2026-2.csv" not in rounds  # November results not back


def test_a_later_today_keeps_every_earlier_record(homes):
    (early, _), (late, _) = homes["a"], homes["later"]
    grew = 0
    for key, spec in CATALOGUE.items():
        key_headers = [spec.column(k).header for k in spec.key_columns]
        late_headers = {spec.column(f).header for f in LATE_FIELDS.get(key, ())}
        for path in landed(early, key):
            before = read(path).set_index(key_headers)
            after = read(late / "landing" / key / path.name).set_index(key_headers)
            assert before.index.is_unique and before.index.isin(after.index).all(), path.name
            grew += len(after) > len(before)
            after = after.loc[before.index]
            for column in before.columns:
                same = before[column] == after[column]
                if column in late_headers:
                    same |= before[column] == ""
                assert same.all(), (path.name, column)
        assert len(landed(late, key)) >= len(landed(early, key))
    assert grew >= 3  # this month's attendance, nurse visits, mood check-ins…


# ---------------------------------------------------------------------------------------------
# Re-exports


def test_duplicate_is_byte_identical_and_correction_changes_a_few_rows(city):
    home, summary = city
    key, copy = summary.duplicate_file
    folder = home / "landing" / key
    original = copy.replace(" (1)", "")
    assert (folder / copy).read_bytes() == (folder / original).read_bytes()
    key, first, fixed = summary.corrected_file
    folder = home / "landing" / key
    a, b = read(folder / first), read(folder / fixed)
    assert len(a) == len(b) and a.columns.tolist() == b.columns.tolist()
    changed = (a.to_numpy() != b.to_numpy()).any(axis=1).sum()
    assert 1 <= changed <= TYPOS
    assert (folder / fixed).stat().st_mtime > (folder / first).stat().st_mtime
    rows = {k: sum(len(read(p)) for p in landed(home, k)) for k in CATALOGUE}
    rows[key] -= len(a)  # the original is superseded by its correction
    rows[summary.duplicate_file[0]] -= len(read(home / "landing" / summary.duplicate_file[0] / copy))
    assert rows == summary.expected_rows


# ---------------------------------------------------------------------------------------------
# Truth and base rates


def test_truth_lives_outside_landing(city):
    home, summary = city
    truth = home / "truth"
    for name in ("pupil_years.csv", "support_effects.csv", "school_effects.csv", "sources.json", "generation.json"):
        assert (truth / name).is_file()
    assert not [p for p in (home / "landing").rglob("*") if p.is_file() and p.suffix != ".csv"]
    recorded = json.loads((truth / "generation.json").read_text(encoding="utf-8"))
    assert recorded["expected_rows"] == summary.expected_rows
    assert tuple(recorded["duplicate_file"]) == summary.duplicate_file
    sources = json.loads((truth / "sources.json").read_text(encoding="utf-8"))
    assert set(sources) == set(CATALOGUE) and sources["aigrow"]["signal"] == "none"
    effects = pd.read_csv(truth / "support_effects.csv").set_index("action").effect_multiplier
    assert effects["monitoring"] == 1.0 and (effects <= 1.0).all() and effects.min() < 0.8


def test_true_probabilities_match_national_base_rates(truth):
    done = truth[truth.school_year < TODAY.year]
    elementary = done[done.grade <= 6].p_futoukou.mean()
    junior = done[done.grade >= 7].p_futoukou.mean()
    assert elementary == pytest.approx(0.0214, rel=0.15)
    assert junior == pytest.approx(0.0671, rel=0.15)
    levels = truth.assign(level=np.select([truth.grade <= 3, truth.grade <= 6], [0, 1], 2)).groupby("level")
    assert levels.p_futoukou.mean().is_monotonic_increasing


def test_probabilities_rise_by_grade_with_a_jump_at_the_first_junior_high_year():
    """Over every simulated person (the intercepts are solved on them), grade by grade."""
    schools = build_schools(SMALL.seed, SMALL.elementary_schools, SMALL.junior_high_schools)
    population = build_population(SMALL.seed, schools, SMALL.school_years, SMALL.pupils)
    latent = build_latent(SMALL.seed, population, schools)
    chain = latent.chain
    by_grade = chain.groupby("grade").p_futoukou.mean().to_numpy()
    assert np.allclose(by_grade, GRADE_TARGETS, rtol=1e-3)
    steps = np.diff(by_grade)
    assert (steps > 0).all() and steps.argmax() == 5 and by_grade.argmax() == 8  # 小6→中1 jump, peak 中3
    # p is an explicit function of the state: the published formula reproduces it.
    eta = np.take(latent.intercepts, chain.grade - 1) + sum(b * chain[k].astype(float) for k, b in BETA.items())
    assert np.allclose(chain.p_futoukou, 1 / (1 + np.exp(-eta)))


def test_realised_outcomes_are_in_a_plausible_band(truth):
    # 2,700 pupil-years hold a few dozen cases: realised rates get a wide band.
    elementary = truth[truth.grade <= 6].futoukou.mean()
    junior = truth[truth.grade >= 7].futoukou.mean()
    illness = (truth.long_absence_reason == "illness").mean()
    assert 0.0214 * 0.5 < elementary < 0.0214 * 1.6
    assert 0.0671 * 0.6 < junior < 0.0671 * 1.4
    assert 0.0114 * 0.4 < illness < 0.0114 * 1.8
    cases = truth[truth.futoukou == 1]
    assert (cases.days_other >= 30).all() and (cases.enrolled_at_year_end == 1).all()
    assert 0.35 < (cases.absent_days >= 90).mean() < 0.8


def test_the_survey_label_is_the_truth_label(city, truth):
    home, _ = city
    survey = pd.concat([read(p) for p in landed(home, "long_absence_survey")], ignore_index=True)
    counted = survey[survey["主たる理由"] == "不登校"]
    labelled = set(counted["学籍番号"] + "/" + counted["年度"])
    done = truth[(truth.school_year < TODAY.year) & (truth.futoukou == 1)]
    assert labelled == set(done.student_number + "/" + done.school_year.astype(str))
    days = survey[["欠席日数", "病気", "経済的理由", "不登校", "新型コロナウイルスの感染回避", "その他"]].astype(int)
    assert (days.iloc[:, 1:].sum(axis=1) == days["欠席日数"]).all() and (days["欠席日数"] >= 30).all()


def test_qu_group_follows_the_scores(city):
    home, _ = city
    c = QU_SURVEY.constants
    qu = pd.concat([read(p) for p in landed(home, "qu_survey")])
    a, i = qu["承認得点"].astype(int), qu["被侵害得点"].astype(int)
    assert a.between(10, 50).all() and i.between(10, 50).all()
    high_a, high_i = a >= c["approval_high_from"], i >= c["infringement_high_from"]
    severe = (a <= c["needs_support"]["approval_at_most"]) & (i >= c["needs_support"]["infringement_at_least"])
    expected = np.select([high_a & ~high_i, ~high_a & ~high_i, high_a & high_i, severe],
                         ["学級生活満足群", "非承認群", "侵害行為認知群", "要支援群"], "学級生活不満足群")
    assert (qu["群"].to_numpy() == expected).all()
    assert set(expected) == {"学級生活満足群", "非承認群", "侵害行為認知群", "学級生活不満足群", "要支援群"}


def test_obesity_index_follows_height_weight_sex_and_age(city):
    home, _ = city
    table = HEALTH_CHECKUP.constants["standard_weight"]
    hc = pd.concat([read(p) for p in landed(home, "health_checkup")])
    grade = hc["学年"].map(lambda g: parsing.parse_grade(g))
    sex = hc["性別"].map({"男": "M", "女": "F"})
    a = np.array([table[s][g + 5][0] for s, g in zip(sex, grade)])
    b = np.array([table[s][g + 5][1] for s, g in zip(sex, grade)])
    height, weight = hc["身長"].astype(float).to_numpy(), hc["体重"].astype(float).to_numpy()
    standard = a * height - b
    assert np.abs((weight - standard) / standard * 100 - hc["肥満度"].astype(float)).max() <= 0.051


def test_aigrow_carries_no_signal_and_qu_does(city, truth):
    home, _ = city
    risk = truth.groupby("student_number").p_futoukou.mean()
    ag = pd.concat([read(p) for p in landed(home, "aigrow")])
    ag_score = ag.groupby("学籍番号")["自己肯定感"].apply(lambda s: s.astype(float).mean())
    qu = pd.concat([read(p) for p in landed(home, "qu_survey")])
    qu_score = qu.groupby("学籍番号")["被侵害得点"].apply(lambda s: s.astype(float).mean())
    r_ag = np.corrcoef(ag_score, risk.reindex(ag_score.index))[0, 1]
    r_qu = np.corrcoef(qu_score, risk.reindex(qu_score.index))[0, 1]
    assert abs(r_ag) < 0.1 and r_qu > 0.15


def test_a_city_of_one_school_each_is_generated(tmp_path):
    """240 pupils in one elementary and one junior high school: some years bring nobody new to
    some grades (an empty batch once crashed the birth dates: float + timedelta)."""
    summary = generate_city(tmp_path / "tiny", CityConfig(pupils=240, elementary_schools=1, junior_high_schools=1,
                                                          years=3), progress=False)
    registry = sorted((tmp_path / "tiny" / "landing" / "pupil_registry").glob("*.csv"))
    assert len(registry) == 3 and summary.expected_rows["pupil_registry"] > 200


def test_pupil_numbers_are_eight_digits_and_some_start_with_zero(truth):
    # what a registry re-saved through Excel would break (the key-damage check must see it)
    numbers = truth.student_number.drop_duplicates()
    assert numbers.str.fullmatch(r"\d{8}").all()
    assert 0.05 < numbers.str.startswith("0").mean() < 0.2
