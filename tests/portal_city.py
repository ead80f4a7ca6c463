"""A published risk list on the tiny city (tests/tiny_city.py), its serving snapshot and an
identity store with synthetic names, for the portal's tests.

Lists of 2024-10-01 (previous) and 2024-11-05 (current):
  B1  p1 小5  ピンク → 赤 (newly red, trend up)    identity: a name with <script> and "
      p3 小2  none → 黄 (新規)                       identity: 髙橋 花子
      p5 小6  no band                              no identity record (氏名未登録)
  C1  p2 中2  橙 → 橙                               identity: 戸田 一郎
      p4 中1  known case (30 non-illness absences)
"""

from __future__ import annotations

from datetime import date, datetime

import duckdb
import pandas as pd

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


def build_city(paths, *, identities: bool = True):
    """Warehouse with both lists, the current snapshot, the identity store. Returns the snapshot."""
    con = duckdb.connect(str(paths.warehouse))
    try:
        tiny_city.build(con)
        publish(con, PREVIOUS, PREV)
        publish(con, CURRENT, AS_OF)
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
