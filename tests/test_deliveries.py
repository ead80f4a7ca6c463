"""Deliveries as a city's staff really make them: nothing lost, nothing silently wrong.

Each test lands files the way a department does — a correction for one school, an older
correction arriving late, a rejected file re-sent after its cause was fixed, a registry re-saved
in Excel, a file still being copied, a name in CP932 bytes, a form submitted twice — runs the real
ingestion and asserts what happened to every row and what the manifest and messages say.
"""

from __future__ import annotations

import codecs
import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd

from tests.test_bad_inputs import (  # noqa: F401  (fixtures)
    ATT, INFANT, Export, city, db, jst, land_real, manifest, staged,
)
from toda_platform.city import load_city
from toda_platform.identity import IdentityStore
from toda_platform.ingest import export_time, ingest_source, release, scan_landing
from toda_platform.pseudonym import pseudonymise

CATALOGUE = load_city("toda").specs  # Toda's specs: what each source means and how Toda writes it

REG, MOOD = "pupil_registry", "mood_checkin"
MAY = "出欠_2026-05.csv"


def run(db, paths, key, source, **kw):
    return ingest_source(db, CATALOGUE[source], paths, key, **kw)


def outcomes(report) -> dict[str, str]:
    return {f.file_name: f.outcome for f in report.files}


def expect(report, wanted: dict[str, str]):
    assert outcomes(report) == wanted, [f.message for f in report.files]
    return report


def write(export: Export, path: Path, *, mtime: float, encoding: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return export.write(path, mtime=mtime, encoding=encoding)


def schools_of(export: Export) -> list[str]:
    return sorted({r[export.col("学校コード")] for r in export.rows if r[0] != "合計"})


# ---------------------------------------------------------------------------------------------
# Corrections: what a file replaces, and in which order
# ---------------------------------------------------------------------------------------------

def test_a_correction_for_one_school_replaces_only_that_school(city, paths, db, key):
    original = city.export(ATT, MAY)
    land_real(city, paths, ATT, MAY)
    run(db, paths, key, ATT)
    before = staged(db, ATT)
    elementary = schools_of(original)[0]
    assert len(schools_of(original)) == 2

    # the elementary school re-exports its own rows: one status corrected, one row removed
    rows = [list(r) for r in original.rows if r[original.col("学校コード")] == elementary]
    rows[3][original.col("出欠")] = "事"
    removed = rows.pop(7)
    correction = original.copy(rows=rows)
    write(correction, paths.landing_dir(ATT) / "出欠_2026-05_訂正.csv", mtime=original.mtime + 7 * 86400)
    report = run(db, paths, key, ATT)
    after = staged(db, ATT)

    out = report.files[0]
    assert out.outcome == "applied" and out.rows_kept == len(rows)
    first_sha = manifest(db, ATT).set_index("file_name").loc[MAY, "sha256"]
    other = before[before.school_code != elementary]
    kept = after[after._file_sha256 == first_sha].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, other.reset_index(drop=True))  # the junior high's rows untouched
    assert (after.school_code == elementary).sum() == len(rows)  # the elementary rows are the correction's
    assert report.rows_deleted == (before.school_code == elementary).sum()
    assert "only where this file has rows" in out.message and MAY in out.message
    row = manifest(db, ATT).set_index("file_name").loc[MAY]
    assert row.outcome == "applied" and "partly replaced by 出欠_2026-05_訂正.csv" in row.message
    # the removed row is gone and said to be gone through the counts, not silently
    removed_day = pd.Timestamp(removed[original.col("日付")].replace("/", "-"))
    pid = pseudonymise(key, removed[original.col("学籍番号")])
    assert not ((after.pupil_id == pid) & (after.date == removed_day)).any()


def test_a_full_correction_supersedes_and_the_run_reports_it_truthfully(city, paths, db, key):
    """Original and correction landed together: the original applies, then is replaced, and the
    run's outcomes say 'superseded' for it, not 'applied'."""
    original = city.export(ATT, MAY)
    land_real(city, paths, ATT, MAY)
    fixed = original.copy()
    fixed.rows[5][original.col("出欠")] = "病"
    write(fixed, paths.landing_dir(ATT) / "出欠_2026-05_訂正.csv", mtime=original.mtime + 86400)
    report = run(db, paths, key, ATT)
    expect(report, {MAY: "superseded", "出欠_2026-05_訂正.csv": "applied"})
    assert report.files[0].superseded_by == "出欠_2026-05_訂正.csv"
    assert report.table_rows == report.files[1].rows_kept


def test_an_older_correction_landing_after_a_newer_one_is_held_until_released(city, paths, db, key):
    original = city.export(ATT, MAY)
    first, second = original.copy(), original.copy()
    first.rows[5][original.col("出欠")] = "病"
    second.rows[5][original.col("出欠")] = "事"
    land_real(city, paths, ATT, MAY)
    write(second, paths.landing_dir(ATT) / "出欠_2026-05_訂正2.csv", mtime=original.mtime + 14 * 86400)
    run(db, paths, key, ATT)
    table = staged(db, ATT)

    # the first correction, exported earlier, arrives a run later
    write(first, paths.landing_dir(ATT) / "出欠_2026-05_訂正1.csv", mtime=original.mtime + 7 * 86400)
    report = run(db, paths, key, ATT)
    out = report.files[0]
    assert out.outcome == "held" and out.rows_kept == 0
    assert out.message.startswith("出欠_2026-05_訂正1.csv: older than 出欠_2026-05_訂正2.csv")
    assert "toda release attendance_daily '出欠_2026-05_訂正1.csv'" in out.message
    pd.testing.assert_frame_equal(staged(db, ATT), table)  # nothing changed
    held = paths.quarantine / ATT / "出欠_2026-05_訂正1.csv"
    assert held.exists() and json.loads(Path(f"{held}.reasons.json").read_text("utf-8"))["outcome"] == "held"
    assert not (paths.landing_dir(ATT) / "出欠_2026-05_訂正1.csv").exists()

    # a person decides the first correction is right after all
    release(db, CATALOGUE[ATT], paths, "出欠_2026-05_訂正1.csv", note="school confirmed")
    report = run(db, paths, key, ATT)
    expect(report, {"出欠_2026-05_訂正1.csv": "applied"})
    assert set(staged(db, ATT).status.unique()) >= {"absent_sick"}
    assert manifest(db, ATT).set_index("file_name").loc["出欠_2026-05_訂正2.csv", "outcome"] == "superseded"


def test_export_time_comes_from_the_name_then_a_plausible_modification_time():
    now = jst(2026, 7, 1)
    at, source = export_time("出欠_2026-05_20260610.csv", jst(2026, 6, 30), now)
    assert source == "file name" and at.isoformat() == "2026-06-10T14:59:59"  # 23:59:59 JST
    at, source = export_time("出欠_2026-05_2026-06-10_0930.csv", 0, now)
    assert at.isoformat() == "2026-06-10T00:30:00"
    at, source = export_time("出欠_2026-05.csv", jst(2026, 6, 2, 17), now)
    assert source == "modification time" and at.isoformat() == "2026-06-02T08:00:00"
    at, source = export_time("出欠_2026-05.csv", 315532800.0, now)  # 1980-01-01, out of a zip
    assert source.startswith("first seen") and "1980-01-01" in source


def test_a_file_from_a_zip_dated_1980_applies_with_a_note(city, paths, db, key):
    land_real(city, paths, ATT, MAY)
    os.utime(paths.landing_dir(ATT) / MAY, (315532800.0, 315532800.0))
    report = run(db, paths, key, ATT)
    out = report.files[0]
    assert out.outcome == "applied", out.message
    assert "first seen" in out.message and "1980-01-01" in out.message
    assert manifest(db, ATT).export_time_from[0].startswith("first seen")


# ---------------------------------------------------------------------------------------------
# Nothing lost: re-sent files, files still being copied, names in other encodings
# ---------------------------------------------------------------------------------------------

def test_a_rejected_file_is_retried_when_the_registry_gains_the_pupil(city, paths, db, key):
    """A transfer missing from the registry: attendance is rejected for an unknown pupil. Landing
    the same file again is read again (and rejected again, with a trace); once the registry
    correction arrives, the quarantined file is retried by itself and applies."""
    registry = city.export(REG, "学齢簿_2026.csv")
    col = registry.col("学籍番号")
    attendance = city.export(ATT, MAY)
    present = {r[attendance.col("学籍番号")] for r in attendance.rows}
    missing = next(r for r in registry.rows if r[col] in present)
    school = missing[registry.col("学校コード")]
    at_school = [r for r in registry.rows if r[registry.col("学校コード")] == school]
    without = registry.copy(rows=[r for r in at_school if r is not missing])
    write(without, paths.landing_dir(REG) / "学齢簿_2026_訂正.csv", mtime=registry.mtime + 3600)
    expect(run(db, paths, key, REG), {"学齢簿_2026_訂正.csv": "applied"})

    land_real(city, paths, ATT, MAY)
    expect(run(db, paths, key, ATT), {MAY: "rejected"})
    held = paths.quarantine / ATT / MAY
    # the school re-sends the same bytes: read again, rejected again, and recorded
    shutil.copy(held, paths.landing_dir(ATT) / MAY)
    report = run(db, paths, key, ATT)
    assert outcomes(report) == {MAY: "rejected"} and "landed again" in json.dumps(
        manifest(db, ATT).message.tolist(), ensure_ascii=False) or report.files[0].outcome == "rejected"
    assert (manifest(db, ATT).outcome == "rejected").sum() == 2

    # 学務課 sends the registry with the transfer: the attendance file is retried from the archive
    write(registry.copy(rows=at_school), paths.landing_dir(REG) / "学齢簿_2026_訂正2.csv", mtime=registry.mtime + 7200)
    expect(run(db, paths, key, REG), {"学齢簿_2026_訂正2.csv": "applied"})
    report = run(db, paths, key, ATT)
    expect(report, {MAY: "applied"})
    assert "retried" in report.files[0].message
    assert report.table_rows == len(attendance.rows)
    assert not held.exists() and not Path(f"{held}.reasons.json").exists()
    assert run(db, paths, key, ATT).files == []  # nothing left to do


def test_landing_the_same_applied_file_again_leaves_a_trace(city, paths, db, key):
    land_real(city, paths, ATT, MAY)
    run(db, paths, key, ATT)
    again = land_real(city, paths, ATT, MAY)
    os.utime(again, (time.time(), time.time()))  # copied in again: a new modification time
    report = run(db, paths, key, ATT)
    assert outcomes(report) == {MAY: "duplicate"} and "landed again" in report.files[0].message
    assert run(db, paths, key, ATT).files == []  # the trace is written once


def test_a_file_still_being_copied_is_left_for_a_later_run(city, paths, db, key):
    target = land_real(city, paths, ATT, MAY)
    now = time.time()
    report = run(db, paths, key, ATT, settle=30, now=now)
    assert report.files == [] and report.skipped[0]["file"] == MAY
    assert "still being copied" in report.skipped[0]["reason"]
    assert manifest(db, ATT).empty  # nothing recorded for a transient state
    from toda_platform.landing_watch import settled, signature

    os.environ["TODA_SETTLE_SECONDS"] = "30"
    try:
        assert signature(settled(paths, ATT, now=now)) is None
        assert signature(settled(paths, ATT, now=now + 31)) is not None
    finally:
        os.environ["TODA_SETTLE_SECONDS"] = "0"
    report = run(db, paths, key, ATT, settle=30, now=now + 31)
    expect(report, {MAY: "applied"})

    # the archive is a true, read-only copy: writing to the landed file later changes nothing
    archive = Path(manifest(db, ATT).archive_path[0])
    sha = manifest(db, ATT).sha256[0]
    with target.open("ab") as f:
        f.write(b"2026/5/31,X,1,\xe5\x87\xba\r\n")
    from toda_platform.ingest import sha256_of

    assert sha256_of(archive) == sha and not os.access(archive, os.W_OK) or os.geteuid() == 0
    assert oct(archive.stat().st_mode & 0o777) == "0o444"
    assert os.stat(archive).st_ino != os.stat(target).st_ino


def test_a_file_name_in_cp932_bytes_is_renamed_and_read(city, paths, db, key):
    folder = paths.landing_dir(ATT)
    folder.mkdir(parents=True)
    data = city.real(ATT, MAY).read_bytes()
    raw = os.fsdecode(MAY.encode("cp932"))  # how Linux sees a name unzipped from Windows
    (folder / raw).write_bytes(data)
    (folder / os.fsdecode(b"\xff\xfe\xfd.csv")).write_bytes(data)  # bytes that are no text at all
    land_real(city, paths, ATT, "出欠_2026-06.csv")
    report = run(db, paths, key, ATT)
    expect(report, {MAY: "applied", "出欠_2026-06.csv": "applied"})
    assert (folder / MAY).exists()
    assert report.skipped == [{"file": "\\xff\\xfe\\xfd.csv",
                               "reason": "its name is neither UTF-8 nor CP932 text: rename it (letters, digits, "
                                         "Japanese) and land it again"}]
    assert "ignored" in set(manifest(db, ATT).outcome)


def test_spreadsheets_folders_and_hidden_files_are_reported_not_read(city, paths, db, key):
    folder = paths.landing_dir(ATT)
    (folder / "old").mkdir(parents=True)
    (folder / "出欠_2026-05.xlsx").write_bytes(b"PK\x03\x04")
    (folder / ".出欠_2026-06.csv.part").write_bytes(b"x")
    land_real(city, paths, ATT, MAY)
    report = run(db, paths, key, ATT)
    expect(report, {MAY: "applied"})
    reasons = {s["file"]: s["reason"] for s in report.skipped}
    assert "Excel workbook" in reasons["出欠_2026-05.xlsx"]
    assert "sub-folders are not read" in reasons["old"]
    assert "hidden or temporary" in reasons[".出欠_2026-06.csv.part"]
    ignored = manifest(db, ATT).query("outcome == 'ignored'")
    assert set(ignored.file_name) == {"出欠_2026-05.xlsx", "old"}  # the transient dot-file is not recorded
    run(db, paths, key, ATT)
    assert len(manifest(db, ATT).query("outcome == 'ignored'")) == 2  # recorded once


def test_scan_orders_files_by_export_time():
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        for name, t in (("b.csv", jst(2026, 6, 2)), ("a.csv", jst(2026, 6, 3)), ("c_20260601.csv", jst(2026, 6, 9))):
            (folder / name).write_text("x")
            os.utime(folder / name, (t, t))
        assert [p.name for p in scan_landing(folder, settle=0).files] == ["c_20260601.csv", "b.csv", "a.csv"]


# ---------------------------------------------------------------------------------------------
# Keys damaged on the way: Excel and leading zeros
# ---------------------------------------------------------------------------------------------

def _padded(export: Export, header: str) -> Export:
    """The file as a system that zero-pads its numbers one digit wider writes it."""
    padded = export.copy()
    i = padded.col(header)
    for r in padded.rows:
        if r[i] and r[0] != "合計":
            r[i] = "0" + r[i]
    return padded


def _without_leading_zeros(export: Export, header: str) -> Export:
    """What Excel does to a number column when the file is opened and saved again."""
    broken = export.copy()
    i = broken.col(header)
    for r in broken.rows:
        r[i] = r[i].lstrip("0０") or r[i]
    return broken


def test_a_registry_resaved_in_excel_is_held_where_it_happens(city, paths, con, key):
    for name in os.listdir(city.paths.landing_dir("school_master")):
        land_real(city, paths, "school_master", name)
    run(con, paths, key, "school_master")
    earlier, registry = (_padded(city.export(REG, f"学齢簿_{y}.csv"), "学籍番号") for y in (2025, 2026))
    write(earlier, paths.landing_dir(REG) / "学齢簿_2025.csv", mtime=earlier.mtime)
    write(registry, paths.landing_dir(REG) / "学齢簿_2026.csv", mtime=registry.mtime)
    assert set(outcomes(run(con, paths, key, REG)).values()) == {"applied"}
    before = staged(con, REG)
    names_before = IdentityStore(paths.identity).count()

    write(_without_leading_zeros(registry, "学籍番号"), paths.landing_dir(REG) / "学齢簿_2026_再出力.csv",
          mtime=registry.mtime + 3600)
    report = run(con, paths, key, REG)
    out = report.files[0]
    assert out.outcome == "held"
    assert "leading zeros lost" in out.message and "Excel" in out.message and "'学籍番号'" in out.message
    assert "not the 9 digits every earlier file had" in out.message
    pd.testing.assert_frame_equal(staged(con, REG), before)
    assert IdentityStore(paths.identity).count() == names_before
    reasons = json.loads((paths.quarantine / REG / "学齢簿_2026_再出力.csv.reasons.json").read_text("utf-8"))
    assert reasons["errors"][0]["check"] == "key_damage" and reasons["outcome"] == "held"
    shown = json.dumps(reasons, ensure_ascii=False) + out.message
    assert not any(r[registry.col("学籍番号")] in shown for r in registry.rows[:50])


def test_infant_checkups_with_resident_numbers_cut_short_are_held(city, paths, db, key):
    for name in ("乳幼児健診_2021.csv", "乳幼児健診_2022.csv"):
        padded = _padded(city.export(INFANT, name), "宛名番号")
        write(padded, paths.landing_dir(INFANT) / name, mtime=padded.mtime)
    assert set(outcomes(run(db, paths, key, INFANT)).values()) == {"applied"}
    broken = _without_leading_zeros(_padded(city.export(INFANT, "乳幼児健診_2023.csv"), "宛名番号"), "宛名番号")
    write(broken, paths.landing_dir(INFANT) / "乳幼児健診_2023.csv", mtime=broken.mtime)
    out = run(db, paths, key, INFANT).files[0]
    assert out.outcome == "held" and "'宛名番号'" in out.message and "11 digits" in out.message
    assert "leading zeros lost" in out.message


# ---------------------------------------------------------------------------------------------
# Forms: row by row
# ---------------------------------------------------------------------------------------------

def test_a_form_keeps_the_latest_submission_and_sets_unknown_pupils_aside(city, paths, db, key):
    name = sorted(p.name for p in city.paths.landing_dir(MOOD).iterdir())[-2]
    form = city.export(MOOD, name)
    t, mood, pupil = form.col("タイムスタンプ"), form.col("今日の心の天気"), form.col("学籍番号")
    resubmitted = list(form.rows[4])
    resubmitted[t] = resubmitted[t].replace(" 7:", " 9:").replace(" 8:", " 9:")
    resubmitted[mood] = "雷" if form.rows[4][mood] != "雷" else "晴れ"
    stranger = list(form.rows[9])
    stranger[pupil] = "12345678"
    # the later submission comes first in the file: the form's timestamp decides, not the order
    rows = form.rows[:4] + [resubmitted] + form.rows[4:9] + [stranger] + form.rows[9:]
    write(form.copy(rows=rows), paths.landing_dir(MOOD) / name, mtime=form.mtime)
    report = run(db, paths, key, MOOD)
    out = report.files[0]
    assert out.outcome == "applied", out.message
    assert out.rows_kept == len(form.rows)  # every original row but the replaced one, plus the resubmission
    assert out.drop_reasons["duplicate_submission"] == 1 and out.drop_reasons["unknown_pupil"] == 1
    table = staged(db, MOOD)
    pid = pseudonymise(key, form.rows[4][pupil])
    codes = CATALOGUE[MOOD].column("mood").values
    assert table[table.pupil_id == pid].mood.tolist()[0] == codes[resubmitted[mood]] or len(
        table[table.pupil_id == pid]) > 1
    assert pseudonymise(key, "12345678") not in set(table.pupil_id)
    warning = next(w for w in out.warnings if w["check"] == "unknown_pupil")
    assert warning["lines"] == [12] and "set aside" in warning["message"]
    everything = json.dumps(manifest(db, MOOD).astype(str).to_dict(), ensure_ascii=False)
    assert "12345678" not in everything and pseudonymise(key, "12345678") not in everything


# ---------------------------------------------------------------------------------------------
# Privacy at the gate
# ---------------------------------------------------------------------------------------------

def test_a_headerless_registry_never_quotes_its_first_row(city, paths, db, key):
    registry = city.export(REG, "学齢簿_2026.csv")
    first = registry.rows[0]
    headerless = Export(registry.name, first, registry.rows[1:], registry.encoding, registry.newline, registry.mtime)
    write(headerless, paths.landing_dir(REG) / "学齢簿_2026_ヘッダなし.csv", mtime=registry.mtime + 3600)
    out = run(db, paths, key, REG).files[0]
    assert out.outcome == "rejected" and "is the header line missing?" in out.message
    assert "8 digits" in out.message
    name, kana, address = first[registry.col("氏名")], first[registry.col("ふりがな")], first[registry.col("住所")]
    reasons = (paths.quarantine / REG / "学齢簿_2026_ヘッダなし.csv.reasons.json").read_text("utf-8")
    for text in (out.message, reasons, json.dumps(manifest(db, REG).astype(str).to_dict(), ensure_ascii=False)):
        for value in (name, kana, address, first[registry.col("学籍番号")], first[registry.col("生年月日")]):
            assert value not in text


def test_a_registry_without_names_applies_and_names_never_reach_the_warehouse(city, paths, db, key):
    registry = city.export(REG, "学齢簿_2026.csv")
    store = IdentityStore(paths.identity)
    # the city fixture staged the registries: their names went to the identity store only
    some = registry.rows[3]
    pid = pseudonymise(key, some[registry.col("学籍番号")])
    assert store.lookup([pid])[pid].name == some[registry.col("氏名")].replace("\u3000", " ") or \
        store.lookup([pid])[pid].name == some[registry.col("氏名")]
    for (table,) in db.execute("SELECT table_name FROM information_schema.tables WHERE table_schema='staging'"
                               ).fetchall():
        text = db.execute(f"SELECT * FROM staging.{table}").df().astype(str).to_csv()
        assert some[registry.col("氏名")] not in text and some[registry.col("ふりがな")] not in text

    drop = [registry.col(h) for h in ("氏名", "ふりがな", "出席番号", "住所")]
    no_names = Export(registry.name, [h for i, h in enumerate(registry.header) if i not in drop],
                      [[v for i, v in enumerate(r) if i not in drop] for r in registry.rows],
                      registry.encoding, registry.newline, registry.mtime)
    write(no_names, paths.landing_dir(REG) / "学齢簿_2026_氏名なし.csv", mtime=registry.mtime + 3600)
    out = run(db, paths, key, REG).files[0]
    assert out.outcome == "applied", out.message
    assert store.lookup([pid])[pid].name is None  # the newer registry has no name for them


# ---------------------------------------------------------------------------------------------
# Clear errors
# ---------------------------------------------------------------------------------------------

def test_a_utf16_tab_separated_unicode_text_export_is_read(city, paths, db, key):
    original = city.export(ATT, MAY)
    text = "\r\n".join("\t".join(r) for r in [original.header, *original.rows]) + "\r\n"
    target = paths.landing_dir(ATT) / "出欠_2026-05.txt"
    target.parent.mkdir(parents=True)
    target.write_bytes(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    os.utime(target, (original.mtime, original.mtime))
    out = run(db, paths, key, ATT).files[0]
    assert out.outcome == "applied", out.message
    assert out.rows_kept == len(original.rows) and out.encoding == "utf-16"


def test_a_huge_anomalous_file_gives_short_messages(city, paths, db, key):
    """Every month of attendance pasted into one file: the messages and the reasons file stay
    short (capped lists), however many rows are wrong."""
    for name in ("出欠_2026-04.csv", "出欠_2026-06.csv"):
        land_real(city, paths, ATT, name)
    run(db, paths, key, ATT)
    big = city.export(ATT, MAY)
    rows = [list(r) for r in big.rows] * 40
    write(big.copy(rows=rows), paths.landing_dir(ATT) / MAY, mtime=big.mtime)
    out = run(db, paths, key, ATT).files[0]
    assert out.outcome == "rejected"
    reasons = paths.quarantine / ATT / f"{MAY}.reasons.json"
    assert len(out.message) < 2000 and reasons.stat().st_size < 50_000
    assert len(manifest(db, ATT).set_index("file_name").loc[MAY, "findings"]) < 50_000


# ---------------------------------------------------------------------------------------------
# The portal's case-meeting entries: pseudonyms instead of 学籍番号, a row per save
# ---------------------------------------------------------------------------------------------

def test_portal_entries_upsert_by_case_id_through_the_gate(city, paths, db, key):
    registry = city.export(REG, "学齢簿_2026.csv")
    row = registry.rows[0]
    pid = pseudonymise(key, row[registry.col("学籍番号")])
    school = row[registry.col("学校コード")]
    header = ["記録番号", "決定日", "学校コード", "仮名ID", "リスク区分", "支援内容", "担当", "経過", "見直し日"]
    folder = paths.landing_dir("support_records")
    from tests.conftest import write_csv

    write_csv(folder / "支援記録_portal_20261110093000_1.csv", header,
              [["P-1", "2026-11-10", school, pid, "赤", "家庭訪問", "SSW", "", "2026-12-10"]])
    write_csv(folder / "支援記録_portal_20261110093500_2.csv", header,
              [["P-2", "2026-11-10", school, pid, "赤", "SC面談", "SC", "", ""]])
    report = run(db, paths, key, "support_records")
    expect(report, {"支援記録_portal_20261110093000_1.csv": "applied", "支援記録_portal_20261110093500_2.csv": "applied"})
    # the review: P-1 sent again with its outcome; P-2 stays as it was
    write_csv(folder / "支援記録_portal_20261210160000_3.csv", header,
              [["P-1", "2026-11-10", school, pid, "赤", "家庭訪問", "SSW", "改善", "2026-12-10"]])
    report = run(db, paths, key, "support_records")
    expect(report, {"支援記録_portal_20261210160000_3.csv": "applied"})
    table = staged(db, "support_records").set_index("case_id")
    assert list(table.index.sort_values()) == ["P-1", "P-2"]
    assert table.loc["P-1", "outcome"] == "improved" and str(table.loc["P-1", "review_on"])[:10] == "2026-12-10"
    assert pd.isna(table.loc["P-2", "outcome"]) and table.loc["P-2", "pupil_id"] == pid
    states = manifest(db, "support_records").set_index("file_name").outcome
    assert states["支援記録_portal_20261110093000_1.csv"] == "superseded"
    assert states["支援記録_portal_20261110093500_2.csv"] == "applied"

    # a guessed pseudonym is set aside (unknown pupil); a malformed one rejects the file
    write_csv(folder / "支援記録_portal_20261211090000_4.csv", header,
              [["P-3", "2026-12-11", school, "0123456789abcdef", "黄", "見守り", "学級担任", "", ""],
               ["P-4", "2026-12-11", school, pid, "黄", "見守り", "学級担任", "", ""]])
    write_csv(folder / "支援記録_portal_20261211090500_5.csv", header,
              [["P-5", "2026-12-11", school, "12345678", "黄", "見守り", "学級担任", "", ""]])
    report = run(db, paths, key, "support_records")
    expect(report, {"支援記録_portal_20261211090000_4.csv": "applied", "支援記録_portal_20261211090500_5.csv": "rejected"})
    assert report.files[0].drop_reasons == {"unknown_pupil": 1}
    assert "not a pseudonym" in report.files[1].message and "12345678" not in report.files[1].message
    write_csv(folder / "both.csv", header[:3] + ["学籍番号"] + header[3:], [["P-6", "2026-12-11", school, "1", pid,
                                                                          "黄", "見守り", "学級担任", "", ""]])
    report = run(db, paths, key, "support_records")
    assert report.files[0].outcome == "rejected" and "never both" in report.files[0].message


def test_a_decision_saved_in_the_portal_reaches_staging(city, paths, db, key):
    """The portal's own writer (portal/supportcsv.py), then the gate: the round trip."""
    import datetime as dt
    from types import SimpleNamespace

    from portal.supportcsv import write_landing_file

    registry = city.export(REG, "学齢簿_2026.csv")
    row = registry.rows[1]
    pid = pseudonymise(key, row[registry.col("学籍番号")])
    entry = SimpleNamespace(pk=7, case_id="W-7", decided_on=dt.date(2026, 11, 12),
                            school_code=row[registry.col("学校コード")], pupil_id=pid, risk_band="赤",
                            action="home_visit", agency="social_worker", outcome=None,
                            review_on=dt.date(2026, 12, 12))
    written = write_landing_file(entry, paths, now=dt.datetime(2026, 11, 12, 15, 0))
    report = run(db, paths, key, "support_records")
    expect(report, {written.name: "applied"})
    stored = staged(db, "support_records").iloc[0]
    assert (stored.case_id, stored.pupil_id, stored.action, stored.agency) == ("W-7", pid, "home_visit",
                                                                               "social_worker")
