"""The ingestion engine on small hand-written exports: values, lineage, idempotency, rejection."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil

import pytest

from tests.conftest import write_csv
from toda_platform.catalogue import Column
from toda_platform.city import load_city
from toda_platform.ingest import ingest_source, read_file, IngestError
from toda_platform.pseudonym import pseudonymise

CATALOGUE = load_city("toda").specs  # Toda's specs: what each source means and how Toda writes it

ATT = CATALOGUE["attendance_daily"]
REG = CATALOGUE["pupil_registry"]
ELEM = "B211222400015"
JH = "C211222400017"
MAY_2024 = 1_714_521_600  # file modification times: exports are written after the month they hold
JULY_2024 = 1_719_792_000
ATT_HEADER = ["日付", "学校コード", "学籍番号", "出欠", "登校形態", "理由"]


def attendance(paths, name, rows, **kw):
    return write_csv(paths.landing_dir("attendance_daily") / name, ATT_HEADER, rows, **kw)


APRIL = [
    ["2024/4/8", ELEM, "20170001", "出", "", ""],
    ["2024/4/8", ELEM, "２０１７０００２", "病", "", "発熱"],
    ["2024/4/9", ELEM, "20170001", "出", "保健室登校", ""],
    ["2024/4/9", ELEM, " 20170002 ", "事", "", ""],
]


def staged(con, table, order="_line"):
    return con.execute(f"SELECT * FROM staging.{table} ORDER BY {order}").df()


def manifest(con):
    return con.execute("SELECT * FROM staging.file_manifest ORDER BY processed_at").df()


def test_attendance_rows_are_typed_pseudonymised_and_traced(paths, con, key):
    attendance(paths, "出欠_2024-04.csv", APRIL + [["合計", "", "", "", "", ""]], trailer="\r\n\r\n")
    report = ingest_source(con, ATT, paths, key)

    df = staged(con, "attendance_daily")
    assert len(df) == 4 and report.rows_inserted == 4
    assert list(df["status"]) == ["present", "absent_sick", "present", "absent_other"]
    assert list(df["room"].fillna("")) == ["", "", "nurse_room", ""]
    assert df["date"].iloc[0] == dt.date(2024, 4, 8) or str(df["date"].iloc[0])[:10] == "2024-04-08"
    # full-width digits and stray spaces give the same pseudonym as the clean number
    assert df["pupil_id"].iloc[1] == df["pupil_id"].iloc[3] == pseudonymise(key, "20170002")
    assert df["pupil_id"].iloc[0] == pseudonymise(key, "20170001")
    assert df["pupil_id"].str.fullmatch(r"[0-9a-f]{16}").all()
    assert list(df["_line"]) == [2, 3, 4, 5]
    assert [str(d)[:10] for d in df["known_date"]] == ["2024-04-08", "2024-04-08", "2024-04-09", "2024-04-09"]

    m = manifest(con)
    assert list(m["outcome"]) == ["applied"]
    row = m.iloc[0]
    assert (row.rows_read, row.rows_kept, row.rows_dropped) == (5, 4, 1)
    assert json.loads(row.drop_reasons) == {"total_row": 1}
    assert row.encoding == "utf-8-sig" and row.period == "2024-04"
    assert (paths.archive / "attendance_daily" / f"{row.sha256}.csv").read_bytes() == \
        (paths.landing_dir("attendance_daily") / "出欠_2024-04.csv").read_bytes()


def test_registry_in_cp932_keeps_no_personal_information(paths, con, key):
    header = ["年度", "学籍番号", "宛名番号", "氏名", "ふりがな", "生年月日", "性別", "学校コード", "学年",
              "組", "出席番号", "住所", "転入日", "転出日"]
    rows = [
        ["2024", "20170001", "1000000001", "髙橋 一郎", "ﾀｶﾊｼ ｲﾁﾛｳ", "H29.5.3", "男", ELEM, "2", "1",
         "3", "埼玉県戸田市上戸田1-2-3", "", ""],
        ["2024", "20150007", "1000000002", "山﨑 花子", "やまさき はなこ", "平成27年12月1日", "女", JH, "3", "2",
         "11", "埼玉県戸田市新曽4-5-6", "R6.9.2", ""],
    ]
    write_csv(paths.landing_dir("pupil_registry") / "学齢簿_2024.csv", header, rows, encoding="cp932")
    ingest_source(con, REG, paths, key)

    df = staged(con, "pupil_registry")
    assert list(df["grade"]) == [2, 9]  # "3" in a junior high (C… code) is 中3 = year 9
    assert [str(d)[:10] for d in df["birth_month"]] == ["2017-05-01", "2015-12-01"]
    assert list(df["sex"]) == ["M", "F"]
    assert df["resident_id"].iloc[0] == pseudonymise(key, "1000000001")
    assert str(df["known_date"].iloc[1])[:10] == "2024-09-02"  # a transfer in is known from its date
    for forbidden in ("name", "kana", "address", "seat_number", "birth_date"):
        assert forbidden not in df.columns
    cells = {str(v) for v in df.astype(str).to_numpy().ravel()}
    for pii in ("髙橋 一郎", "山﨑 花子", "タカハシ イチロウ", "ﾀｶﾊｼ ｲﾁﾛｳ", "やまさき はなこ",
                "埼玉県戸田市上戸田1-2-3", "20170001", "1000000001"):
        assert pii not in cells
    assert manifest(con).iloc[0].encoding == "cp932"


def test_landing_the_same_file_twice_changes_nothing(paths, con, key):
    attendance(paths, "出欠_2024-04.csv", APRIL)
    ingest_source(con, ATT, paths, key)
    before = (staged(con, "attendance_daily"), manifest(con))
    report = ingest_source(con, ATT, paths, key)
    assert report.files == [] and report.rows_inserted == 0
    after = (staged(con, "attendance_daily"), manifest(con))
    assert before[0].equals(after[0]) and before[1].equals(after[1])


def test_a_byte_identical_copy_under_a_new_name_is_recorded_and_skipped(paths, con, key):
    first = attendance(paths, "出欠_2024-04.csv", APRIL, mtime=MAY_2024)
    ingest_source(con, ATT, paths, key)
    shutil.copy(first, first.with_name("出欠_2024-04 (1).csv"))
    report = ingest_source(con, ATT, paths, key)
    assert [f.outcome for f in report.files] == ["duplicate"]
    assert len(staged(con, "attendance_daily")) == 4
    assert sorted(manifest(con)["outcome"]) == ["applied", "duplicate"]
    assert ingest_source(con, ATT, paths, key).files == []  # and only once


def test_a_corrected_reexport_replaces_the_rows_of_the_file_it_supersedes(paths, con, key):
    attendance(paths, "出欠_2024-04.csv", APRIL, mtime=MAY_2024)
    ingest_source(con, ATT, paths, key)
    corrected = [r[:] for r in APRIL[:3]]
    corrected[1][3] = "出"  # the sick day was a mistake, and the last row was entered twice
    attendance(paths, "出欠_2024-04_訂正.csv", corrected, mtime=MAY_2024 + 100)
    report = ingest_source(con, ATT, paths, key)

    assert report.rows_deleted == 4 and report.rows_inserted == 3
    df = staged(con, "attendance_daily")
    assert list(df["status"]) == ["present", "present", "present"]
    m = manifest(con).set_index("file_name")
    assert m.loc["出欠_2024-04.csv", "outcome"] == "superseded"
    assert m.loc["出欠_2024-04.csv", "superseded_by"] == m.loc["出欠_2024-04_訂正.csv", "sha256"]
    # a different month is another slot: it adds, it does not replace
    attendance(paths, "出欠_2024-05.csv", [["2024/5/7", ELEM, "20170001", "チ", "", ""]],
               mtime=JULY_2024)
    ingest_source(con, ATT, paths, key)
    assert len(staged(con, "attendance_daily")) == 4


def test_a_bad_file_is_quarantined_with_reasons_and_the_good_files_still_apply(paths, con, key):
    attendance(paths, "出欠_2024-04.csv", APRIL, mtime=MAY_2024)
    ingest_source(con, ATT, paths, key)
    good_before = staged(con, "attendance_daily")

    bad_rows = [["2024/5/7", ELEM, "20170001", "出", "", ""], ["令和6年2月30日", ELEM, "20170002", "出", "", ""]]
    attendance(paths, "出欠_2024-05.csv", bad_rows, mtime=MAY_2024 + 100)
    attendance(paths, "出欠_2024-06.csv", [["2024/6/3", ELEM, "20170001", "病", "", ""]], mtime=JULY_2024)
    report = ingest_source(con, ATT, paths, key)

    assert [f.outcome for f in report.files] == ["rejected", "applied"]
    message = report.files[0].message
    assert "出欠_2024-05.csv" in message and "line 3" in message and "'日付'" in message
    assert "令和6年2月30日" in message
    df = staged(con, "attendance_daily")
    assert len(df) == len(good_before) + 1
    assert not (paths.landing_dir("attendance_daily") / "出欠_2024-05.csv").exists()
    quarantined = paths.quarantine / "attendance_daily" / "出欠_2024-05.csv"
    assert quarantined.exists()
    reasons = json.loads(quarantined.with_name(quarantined.name + ".reasons.json").read_text("utf-8"))
    assert reasons["errors"][0]["lines"] == [3] and reasons["errors"][0]["column"] == "date"

    # the department fixes the file and lands it again: it applies
    attendance(paths, "出欠_2024-05.csv", [bad_rows[0]], mtime=JULY_2024 + 100)
    ingest_source(con, ATT, paths, key)
    assert len(staged(con, "attendance_daily")) == len(good_before) + 2


@pytest.mark.parametrize(
    "header, rows, expected",
    [
        (["日付", "学校コード", "児童番号X", "出欠"], [["2024/4/8", ELEM, "1", "出"]],
         "required column '学籍番号' (pupil_id) is missing"),
        (ATT_HEADER, [["2024/4/8", ELEM, "1", "出", ""]], "line 2"),
        (ATT_HEADER, [["2024/4/8", ELEM, "1", "遊", "", ""]], "'遊' is not an allowed value"),
        (ATT_HEADER, [["2024/4/8", "X12", "1", "出", "", ""]], "not a 13-character MEXT school code"),
        (ATT_HEADER, [["2024/4/8", ELEM, "1", "出", "", ""], ["2024/4/8", ELEM, "１", "出", "", ""]],
         "more than once"),
        (ATT_HEADER, [], "no data rows"),
        (ATT_HEADER, [["2024/4/8", ELEM, "", "出", "", ""]], "'学籍番号' is blank but is required"),
        (ATT_HEADER, [["2024/4/8", ELEM, "1", "出", "", ""], ["2024/5/8", ELEM, "1", "出", "", ""]],
         "must cover one period"),
    ],
    ids=["renamed-header", "ragged-row", "unknown-value", "bad-school", "duplicate-key",
         "header-only", "blank-key", "two-months"],
)
def test_unreadable_files_are_explained(paths, con, key, header, rows, expected):
    path = write_csv(paths.tmp_file if hasattr(paths, "tmp_file") else paths.home / "x.csv", header, rows)
    with pytest.raises(IngestError) as info:
        read_file(con, ATT, path, key)
    assert expected in info.value.message
    assert info.value.message.startswith("x.csv")


def test_empty_and_binary_files_are_rejected(paths, con, key):
    empty = paths.home / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(IngestError, match="empty.csv: the file is empty"):
        read_file(con, ATT, empty, key)
    garbage = paths.home / "garbage.csv"
    garbage.write_bytes(bytes(range(256)) * 10)
    with pytest.raises(IngestError, match="garbage.csv: cannot be read as text"):
        read_file(con, ATT, garbage, key)


def test_a_truncated_last_line_names_its_line(paths, con, key):
    path = paths.home / "cut.csv"
    path.write_text("日付,学校コード,学籍番号,出欠\n2024/4/8,%s,1,出\n2024/4/8,%s,\"2" % (ELEM, ELEM),
                    encoding="utf-8")
    with pytest.raises(IngestError) as info:
        read_file(con, ATT, path, key)
    assert "line 3" in info.value.message


def test_a_schema_change_in_the_catalogue_replays_the_archive(paths, con, key, monkeypatch):
    attendance(paths, "出欠_2024-04.csv", APRIL)
    ingest_source(con, ATT, paths, key)
    shutil.rmtree(paths.landing)  # the landing zone may be cleaned: the archive keeps everything
    extra = Column("period_no", "int", required=False, nullable=True, headers=("校時",))
    changed = dataclasses.replace(ATT, columns=ATT.columns + (extra,))
    report = ingest_source(con, changed, paths, key)
    assert report.rebuilt
    df = staged(con, "attendance_daily")
    assert len(df) == 4 and "period_no" in df.columns and df["period_no"].isna().all()
    assert list(manifest(con)["outcome"]) == ["applied"]


def test_toda_files_lists_what_happened_to_each_file_under_the_warehouse_settings(paths, con, key, monkeypatch):
    """`toda files` opens the warehouse as every reader does (warehouse.connect: the settings'
    memory limit and threads), so a malformed setting is named, not ignored."""
    from click.testing import CliRunner

    from toda_platform.cli import main

    attendance(paths, "出欠_2024-04.csv", APRIL)
    ingest_source(con, ATT, paths, key)
    attendance(paths, "出欠_2024-04 (2).csv", APRIL)  # the same bytes sent again
    ingest_source(con, ATT, paths, key)
    con.close()
    monkeypatch.setenv("TODA_DUCKDB_THREADS", "1")
    out = CliRunner().invoke(main, ["files", "attendance_daily", "--home", str(paths.home)], terminal_width=200)
    assert out.exit_code == 0, out.output
    assert "出欠_2024-04.csv" in out.output and "applied" in out.output and "duplicate" in out.output
    monkeypatch.setenv("TODA_DUCKDB_MEMORY_LIMIT", "lots")
    bad = CliRunner().invoke(main, ["files", "attendance_daily", "--home", str(paths.home)])
    assert bad.exit_code != 0 and "TODA_DUCKDB_MEMORY_LIMIT" in str(bad.exception or bad.output)


def test_export_times_in_a_held_message_show_seconds_only_when_the_minutes_are_equal():
    from toda_platform.ingest import _jst

    a, b = dt.datetime(2026, 11, 30, 16, 53, 5), dt.datetime(2026, 11, 30, 16, 53, 41)  # UTC
    assert (_jst(a, b), _jst(b, a)) == ("2026-12-01 01:53:05", "2026-12-01 01:53:41")
    c = dt.datetime(2026, 11, 30, 16, 54, 0)
    assert (_jst(a, c), _jst(c, a)) == ("2026-12-01 01:53", "2026-12-01 01:54")
    assert _jst(a) == "2026-12-01 01:53"


@pytest.mark.parametrize("files", [1, 2])
def test_a_file_whose_move_to_quarantine_never_happened_is_read_again_and_says_why(paths, con, key,
                                                                                  monkeypatch, files):
    """A batch's quarantine moves wait for its commit. A run that stops between the two (a power
    cut) leaves a held file in landing; the next run reads it again and says so — not "landed
    again", which it never was — and moves it; no row is lost or written twice."""
    import toda_platform.ingest as I

    attendance(paths, "出欠_2024-04_訂正.csv", APRIL, mtime=JULY_2024)
    ingest_source(con, ATT, paths, key)
    older = [row[:3] + (["病"] if row[3] == "出" else row[3:4]) + row[4:] for row in APRIL]
    attendance(paths, "出欠_2024-04.csv", older, mtime=MAY_2024)  # exported before the correction: held
    if files == 2:  # judged in one batch with a good file
        attendance(paths, "出欠_2024-05.csv", [["2024/5/7", ELEM, "20170001", "出", "", ""]], mtime=JULY_2024)
    rows = con.execute("SELECT count(*) FROM staging.attendance_daily").fetchone()[0]
    real = I._move_to_quarantine

    def power_cut(*args, **kwargs):
        raise RuntimeError("power cut")

    monkeypatch.setattr(I, "_move_to_quarantine", power_cut)
    with pytest.raises(RuntimeError, match="power cut"):
        ingest_source(con, ATT, paths, key)
    manifest = "SELECT outcome, message FROM staging.file_manifest WHERE file_name = '出欠_2024-04.csv' ORDER BY processed_at"
    # alone, a file is judged and moved in its own transaction: the cut leaves no trace of it; in
    # a batch the moves wait for the batch's commit (and the cut is the error the run ends with)
    assert [o for o, _ in con.execute(manifest).fetchall()] == ([] if files == 1 else ["held"])
    landed = paths.landing_dir("attendance_daily") / "出欠_2024-04.csv"
    assert landed.exists()
    after_cut = con.execute("SELECT count(*) FROM staging.attendance_daily").fetchone()[0]
    assert after_cut == rows + (1 if files == 2 else 0)

    monkeypatch.setattr(I, "_move_to_quarantine", real)
    ingest_source(con, ATT, paths, key)
    outcomes = con.execute(manifest).fetchall()
    assert [o for o, _ in outcomes] == ["held"] * files
    message = outcomes[-1][1]
    assert "landed again" not in message
    assert ("stopped before moving it to quarantine" in message) == (files == 2)
    assert "older than 出欠_2024-04_訂正.csv" in message  # the file's own reason, as before
    assert not landed.exists() and (paths.quarantine / "attendance_daily" / "出欠_2024-04.csv").exists()
    assert con.execute("SELECT count(*) FROM staging.attendance_daily").fetchone()[0] == after_cut

    # the same bytes landed again after that are "landed again"
    attendance(paths, "出欠_2024-04.csv", older, mtime=MAY_2024 + 3600)
    ingest_source(con, ATT, paths, key)
    assert "landed again after it was held" in con.execute(manifest).fetchall()[-1][1]
