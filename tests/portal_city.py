"""A published risk list on the tiny city (tests/tiny_city.py), its serving snapshot and an
identity store with synthetic names, for the portal's tests.

Lists of 2024-10-01 (previous) and 2024-11-05 (current):
  B1  p1 小5  ピンク → 赤 (newly red, trend up)    identity: a name with <script> and "
      p3 小2  none → 黄 (新規)                       identity: 髙橋 花子
      p5 小6  no band                              no identity record (氏名未登録)
  C1  p2 中2  橙 → 橙                               identity: 戸田 一郎
      p4 中1  known case (30 non-illness absences)

The second half's tables (issue 11), hand-made so the pages' values are known (publish_outputs):
  学校カルテ 2022-2024 (2024 in progress, no 不登校 figure yet) for B1, C1 and a second
  elementary school B9 that only the karte has (so B1's city average is not B1 itself);
  beating the odds pooled: B1 +0.120 [+0.050, +0.190] (above), C1 -0.010 (no verdict), B9 below;
  Q-U 要支援群 suppressed at B1 in every year; C1's 2024 estimate suppressed (8 pupils).
  Support: 家庭訪問 0.87 [0.82, 0.92] (naive 29.9), 見守り 0.94 [0.88, 1.01], the rest never decided.
  Screen at 2024-11-05: B1 p1 5 点, p3 3 点, p5 2 点, 41 others 0-1 点 (44 screened: the top 5 %
  is rank <= 3, and min score 3 drops p5); C1 p2 4 点, c01-c11 3 点, 20 others 0 点.
"""

from __future__ import annotations

from datetime import date, datetime

import duckdb
import numpy as np
import pandas as pd

from ml import hardship, karte
from ml import support_effects as S
from ml.scoring import KNOWN_CASES_DDL, RISK_SCORES_DDL
from portal.serving import build_snapshot
from tests import tiny_city
from tests.tiny_city import B1, C1
from toda_platform.identity import IdentityRecord, IdentityStore

AS_OF, PREV = date(2024, 11, 5), date(2024, 10, 1)
XSS_NAME = '<script>alert("x")</script>"山田 葵'
NAMES = {"p1": (XSS_NAME, "やまだ あおい", 12), "p3": ("髙橋 花子", "たかはし はなこ", 3),
         "p2": ("戸田 一郎", "とだ いちろう", 21)}

#        pupil, school, grade, score, band, rank, reasons
CURRENT = [("p1", B1, 5, 0.71, "赤", 1, ["直近30日の病気以外の欠席 3日（学年平均の約3倍）", "保健室の利用 3回", "Q-U 要支援群"]),
           ("p3", B1, 2, 0.12, "黄", 2, ["転入（今年度）"]),
           ("p5", B1, 6, 0.01, None, 3, []),
           ("p2", C1, 8, 0.30, "橙", 1, ["=HYPERLINK(\"http://x\")", "-1 を含む理由"])]
PREVIOUS = [("p1", B1, 5, 0.45, "ピンク", 1, ["x"]), ("p3", B1, 2, 0.02, None, 2, []),
            ("p5", B1, 6, 0.01, None, 3, []), ("p2", C1, 8, 0.29, "橙", 1, ["y"])]


def risk_frame(rows, as_of) -> pd.DataFrame:
    out = []
    for pid, school, grade, score, band, rank, reasons in rows:
        r = {"pupil_id": pid, "school_code": school, "grade": grade, "as_of_date": as_of, "score": score,
             "band": band, "rank_in_school": rank, "reasons_json": "[]", "model_name": "futoukou_risk",
             "model_version": "3", "scored_at": datetime(2024, 11, 5, 6, 0)}
        for i in range(5):
            r[f"reason_{i + 1}"] = reasons[i] if i < len(reasons) else None
        out.append(r)
    return pd.DataFrame(out)


def publish(con: duckdb.DuckDBPyConnection, rows, as_of) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS outputs")
    con.execute(RISK_SCORES_DDL)
    con.execute(KNOWN_CASES_DDL)
    frame = risk_frame(rows, as_of)
    con.register("_f", frame)
    con.execute("DELETE FROM outputs.risk_scores WHERE as_of_date = ?", [as_of])
    con.execute("INSERT INTO outputs.risk_scores BY NAME SELECT * FROM _f")
    con.unregister("_f")
    con.execute("DELETE FROM outputs.known_cases WHERE as_of_date = ?", [as_of])
    con.execute("INSERT INTO outputs.known_cases VALUES ('p4', ?, 7, ?, 30)", [C1, as_of])


B9 = "B111222400099"
KARTE_YEARS = (2022, 2023, 2024)
# school, name, type, enrolment, per year: (不登校 %, 出席率, Q-U 満足群, 時間外)
KARTE = {
    B1: ("戸田第一小学校", "elementary", 300, [(1.50, 0.955, 0.40, 45.0), (1.20, 0.960, 0.45, 42.5),
                                               (None, 0.962, 0.50, 40.0)]),
    B9: ("戸田第九小学校", "elementary", 100, [(2.70, 0.945, 0.30, 50.0), (2.40, 0.940, 0.35, 47.5),
                                               (None, 0.950, 0.30, 44.0)]),
    C1: ("戸田中学校", "junior_high", 200, [(4.00, 0.930, 0.38, 55.0), (4.50, 0.925, 0.40, 52.0),
                                               (None, 0.935, 0.42, 50.0)]),
}
#           school: pooled (estimate, low, high); per year {year: (estimate, low, high, pupils)}
ODDS = {B1: ((0.120, 0.050, 0.190), {2023: (0.10, 0.02, 0.18, 60), 2024: (0.14, -0.01, 0.29, 62)}),
        B9: ((-0.200, -0.300, -0.100), {2023: (-0.2, -0.35, -0.05, 20), 2024: (-0.2, -0.3, -0.1, 21)}),
        C1: ((-0.010, -0.080, 0.060), {2023: (0.0, -0.1, 0.1, 40), 2024: (None, None, None, 8)})}


def karte_frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    agg, per_year, pooled = [], [], []
    for code, (name, kind, enrolment, years) in KARTE.items():
        for year, (fut, att, qu, ot) in zip(KARTE_YEARS, years):
            row = {"school_code": code, "school_name": name, "school_type": kind, "school_year": year,
                   "year_complete": year < 2024, "enrolment": enrolment}
            for cell, _, _ in karte.TREND_CELLS:
                row[cell], row[f"{cell}_suppressed"] = 1.0, False
            row.update(futoukou_rate=fut, attendance_rate=att, qu_share_satisfied=qu, overtime_mean_hours=ot)
            if code == B1:
                row.update(qu_share_needs_support=None, qu_share_needs_support_suppressed=True)
            for cell, _ in karte.PRACTICES:
                row.setdefault(cell, 3.0)
            agg.append(row)
        (est, lo, hi), by_year = ODDS[code]
        for year, (e, l_, h, n) in by_year.items():
            per_year.append({"school_code": code, "school_year": year, "n_pupils": n, "estimate": e, "se": 0.0,
                             "suppressed": e is None, "low": l_, "high": h,
                             "verdict_ja": karte.verdict_ja(l_, h) if e is not None else None})
        pooled.append({"school_code": code, "n_pupils": 120, "n_years": 2, "estimate": est, "se": 0.0,
                       "low": lo, "high": hi, "verdict_ja": karte.verdict_ja(lo, hi)})
    return (pd.DataFrame(agg).astype({"futoukou_rate": float}), pd.DataFrame(per_year).astype(
        {"estimate": float, "low": float, "high": float}), pd.DataFrame(pooled))


def support_table() -> pd.DataFrame:
    given = {"home_visit": (40, 29.9, 0.87, 0.82, 0.92), "monitoring": (55, 20.5, 0.94, 0.88, 1.01)}
    rows = []
    for action in S.ACTIONS:
        n, naive, adj, lo, hi = given.get(action, (0, np.nan, np.nan, np.nan, np.nan))
        rows.append({"action": action, "action_ja": S.ACTION_JA[action], "n_supported": n,
                     "n_comparable": 900, "n_unmatched": 0, "naive_effect": naive, "adjusted_effect": adj,
                     "ci_low": lo, "ci_high": hi, "naive_ci_low": naive * 0.9, "naive_ci_high": naive * 1.1,
                     "balance_pre_ratio": 1.0, "n_boot": 200})
    table = pd.DataFrame(rows)
    table["verdict_ja"] = [S.verdict_ja(r) for r in table.itertuples()]
    return table


def screen_features() -> pd.DataFrame:
    spec = hardship.load_spec()
    rows = [("p1", B1, 5, {"nur_max_adjustment_index": 25, "hlth_caries_untreated": True}),
            ("p3", B1, 2, {"inf_missed": 1, "att_prev_monday_absent": 6}),
            ("p5", B1, 6, {"ctx_school_aid_rate": 22, "hlth_obesity_index": -25}),
            ("p2", C1, 8, {"cns_ytd_by_social_worker": 1, "sup_ytd_ssw": 1})]
    rows += [(f"b{i:02d}", B1, 3, {"att_prev_monday_absent": 5} if i < 3 else {}) for i in range(41)]
    rows += [(f"c{i:02d}", C1, 7, {"nur_max_adjustment_index": 20}) for i in range(1, 12)]
    rows += [(f"z{i:02d}", C1, 7, {}) for i in range(20)]
    out = []
    for pid, school, grade, values in rows:
        r = {"pupil_id": pid, "school_code": school, "grade": grade, "as_of_date": pd.Timestamp(AS_OF)}
        r.update({f: np.nan for f in spec.features})
        r.update(values)
        out.append(r)
    return pd.DataFrame(out).astype({"hlth_caries_untreated": "boolean"})


def publish_outputs(con: duckdb.DuckDBPyConnection, reports) -> None:
    """The 学校カルテ, support effects and screen tables and their charts (ml's own functions)."""
    aggregates, per_year, pooled = karte_frames()
    table = karte.karte_table(aggregates, per_year, pooled)
    practices = pd.DataFrame([
        {"practice": "teacher_lesson_improvement", "label_ja": "授業改善の取組（教員質問紙）", "n_schools": 18,
         "correlation": 0.90, "ci_low": 0.74, "ci_high": 0.96},
        {"practice": "teacher_ict_use", "label_ja": "ICTの活用（教員質問紙）", "n_schools": 18,
         "correlation": 0.13, "ci_low": -0.35, "ci_high": 0.55}])
    practices["wording_ja"] = [karte.association_ja(r.label_ja, r.correlation, r.ci_low, r.ci_high)
                               for r in practices.itertuples()]
    effects = support_table()
    spec = hardship.load_spec()
    screened = hardship.screen(screen_features(), spec)
    con.execute("CREATE SCHEMA IF NOT EXISTS outputs")
    for name, frame in (("school_karte", table), ("karte_practices", practices), ("support_effects", effects)):
        con.register("_f", frame)
        con.execute(f"CREATE OR REPLACE TABLE outputs.{name} AS SELECT * FROM _f")
        con.unregister("_f")
    con.execute(hardship.HARDSHIP_SCREEN_DDL)
    con.register("_f", screened.assign(screened_at=datetime(2024, 11, 5, 6, 0)))
    con.execute(f"INSERT INTO {hardship.TABLE} BY NAME SELECT * FROM _f")
    con.unregister("_f")
    for code in KARTE:
        karte.school_chart(table, code, reports / "karte")
    karte.board_chart(pooled, {c: v[0] for c, v in KARTE.items()}, reports / "karte")
    S.effects_chart(effects, reports / "support")


def build_city(paths, *, identities: bool = True):
    """Warehouse with both lists, the current snapshot, the identity store. Returns the snapshot."""
    con = duckdb.connect(str(paths.warehouse))
    try:
        tiny_city.build(con)
        publish(con, PREVIOUS, PREV)
        publish(con, CURRENT, AS_OF)
        publish_outputs(con, paths.reports)
        published = build_snapshot(con, paths)
    finally:
        con.close()
    if identities:
        IdentityStore(paths.identity).replace(
            [(2024, B1), (2024, C1)],
            [IdentityRecord(pid, 2024, B1 if pid != "p2" else C1, grade=None, class_name="1",
                            seat_number=seat, name=name, kana=kana, file_sha256="x")
             for pid, (name, kana, seat) in NAMES.items()])
    return published
