"""Issue 14, what was left: the portal's audit log under erasure and key rotation (crypto-shredding
of its subjects), the format-1 chain's upgrade, erasure tokens that survive a rotation, and
retention on a monthly schedule. The small city and the trace scan are test_governance.py's."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys

import dagster as dg
import duckdb
import pytest

from tests.portal_fixtures import city, login, published_home, users  # noqa: F401
from tests.test_portal_browser import browser  # noqa: F401
from tests.tiny_city import B1
from tests.test_governance import OTHERS, TARGET, TODAY, _derived_tables, _ingest_all, _land_city, _traces
from toda_platform.governance import audit_subjects, erasure
from toda_platform.pseudonym import pseudonymise
from toda_platform.warehouse import WRITER_TAG

# ---------------------------------------------------------------------------------------------
# The real portal database of a home, driven in a subprocess (its own Django, its own files)
# ---------------------------------------------------------------------------------------------

PORTAL = r"""
import json, sys
from portal.commands import setup, migrate
setup(); migrate()
from portal import audit
from portal.models import AuditEntry
out = {}
for cmd in json.loads(sys.argv[1]):
    op = cmd[0]
    if op == "record":
        audit.record(cmd[1], username=cmd[2], pupil_ids=cmd[3], detail=cmd[4], school_code="B1")
    elif op == "about":
        out.setdefault("about", {})[cmd[1]] = [e.seq for e in audit.about(cmd[1])]
    elif op == "verify":
        v = audit.verify()
        out["verify"] = [v.ok, v.checked, v.message()]
    elif op == "entries":
        out["entries"] = [[e.seq, e.action, e.subjects, e.detail] for e in AuditEntry.objects.order_by("seq")]
print(json.dumps(out))
"""


def portal(paths, *commands) -> dict:
    env = {**os.environ, "TODA_HOME": str(paths.home)}
    r = subprocess.run([sys.executable, "-c", PORTAL, json.dumps(commands)], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _bytes_hold(path, needles) -> list[str]:
    data = path.read_bytes() if path.exists() else b""
    return [n for n in needles if n.encode() in data]


def _portal_files(paths) -> list:
    return [p for p in (paths.home / "portal").glob("portal.sqlite3*")]


def test_after_erasure_the_audit_log_no_longer_names_the_pupil_and_still_verifies(paths, con, key):
    _land_city(paths)
    _ingest_all(con, paths, key)
    target, *others = [pseudonymise(key, n) for n, *_ in [TARGET, *OTHERS]]
    before = portal(paths,
                    ["record", "view_pupil", "teacher", [target], ""],
                    ["record", "view_school", "teacher", [target, *others], "3 listed"],
                    # a 記録番号 made before 2026-11-30 held 6 characters of the pseudonym
                    ["record", "support_outcome", "teacher", [target], f"P20241105101010-{target[:6]}-1 outcome"],
                    ["record", "view_pupil", "nurse", [others[0]], ""],
                    ["about", target], ["about", others[0]], ["verify"], ["entries"])
    assert before["about"] == {target: [1, 2, 3], others[0]: [2, 4]}
    assert before["verify"][0] and before["verify"][1] == 4
    entries = before["entries"]
    assert entries[2][3] == "P20241105101010-＊-1 outcome"
    # no entry holds a pseudonym: one 32-hex commitment per pupil named
    assert all(len(c) == 32 for e in entries for c in e[2].split()) and len(entries[1][2].split()) == 3
    assert not _bytes_hold(paths.home / "portal" / "portal.sqlite3", [target, *others, target[:6] + "-"])
    store = audit_subjects.store_path(paths)
    assert _bytes_hold(store, [target]) == [target]  # the index: the only place the pseudonym is

    report = erasure.erase(con, paths, key, TARGET[0], "保護者からの削除請求")
    con.close()
    erasure.compact(paths.warehouse)
    assert report.audit_subjects == 1

    # a stale link to the erased pupil is refused and audited, without indexing them again
    after = portal(paths, ["record", "refused", "teacher", [target], ""],
                   ["about", target], ["about", others[0]], ["verify"], ["entries"])
    assert after["about"] == {target: [], others[0]: [2, 4]}  # unlinkable; the others still answerable
    assert after["verify"][0] and after["verify"][1] == 5  # nothing rewritten: the chain still verifies
    assert [e[:3] for e in after["entries"][:4]] == [e[:3] for e in entries]
    assert after["entries"][4][2] not in {c for e in entries for c in e[2].split()}
    # no trace of the pupil in any table or byte under the home (the portal's database included),
    # nor in the subject store, which lives apart
    assert _traces(paths, key) == []
    assert _bytes_hold(store, [target]) == [] and set(audit_subjects.held(store)) == set(others)
    for p in _portal_files(paths):
        assert not _bytes_hold(p, [target]), p


def _rotatable_city(paths, key, monkeypatch, *, derived=True):
    """The small city ingested, its key in the key file (as rotation needs): the open warehouse."""
    monkeypatch.delenv("TODA_PSEUDONYM_KEY")
    paths.pseudonym_key_file.parent.mkdir(parents=True)
    paths.pseudonym_key_file.write_text(key.decode() + "\n")
    _land_city(paths)
    con = duckdb.connect(str(paths.warehouse))
    _ingest_all(con, paths, key)
    if derived:
        _derived_tables(con, key)
    return con


def test_a_key_rotation_repoints_the_subjects_so_the_audit_answers_under_the_new_pseudonyms(paths, key,
                                                                                          monkeypatch):
    from toda_platform.governance.keys import rotate

    con = _rotatable_city(paths, key, monkeypatch)
    old = {n: pseudonymise(key, n) for n, *_ in [TARGET, *OTHERS]}
    portal(paths, ["record", "view_pupil", "teacher", [old[TARGET[0]]], ""],
           ["record", "view_school", "teacher", list(old.values()), ""],
           ["record", "refused", "snoop", ["not-a-pupil"], ""])
    assert set(audit_subjects.held()) == {*old.values(), "not-a-pupil"}
    report = rotate(con, paths)
    con.close()
    new_key = paths.pseudonym_key_file.read_text().strip().encode()
    new = {n: pseudonymise(new_key, n) for n in old}
    assert (report.audit_subjects, report.audit_shredded) == (3, 1)  # a pseudonym with no number: shredded
    out = portal(paths, *[["about", p] for p in [*new.values(), *old.values()]], ["verify"])
    assert out["about"][new[TARGET[0]]] == [1, 2] and out["about"][new[OTHERS[0][0]]] == [2]
    assert all(out["about"][p] == [] for p in old.values())
    assert out["verify"][0] and out["verify"][1] == 3
    assert set(audit_subjects.held()) == set(new.values())
    assert not _bytes_hold(audit_subjects.store_path(paths), list(old.values()))


def test_an_interrupted_rotation_stops_every_run_until_it_is_finished_with_the_same_key(paths, key, monkeypatch):
    from click.testing import CliRunner

    from resources.toda import TodaHome
    from toda_platform.cli import main
    from toda_platform.governance import keys
    from toda_platform.pseudonym import InterruptedRotationError, rotating_file

    con = _rotatable_city(paths, key, monkeypatch)
    portal(paths, ["record", "view_pupil", "teacher", [pseudonymise(key, TARGET[0])], ""])

    def crash(*_a, **_k):
        raise RuntimeError("power cut")

    rekey_identity = keys._rekey_identity
    monkeypatch.setattr(keys, "_rekey_identity", crash)  # after the warehouse's transaction
    with pytest.raises(RuntimeError, match="power cut"):
        keys.rotate(con, paths)
    con.close()
    drawn = rotating_file(paths.pseudonym_key_file).read_text().strip().encode()
    assert paths.pseudonym_key_file.read_text().strip() == key.decode()  # the old key is still in place
    w = duckdb.connect(str(paths.warehouse))
    assert w.execute("SELECT DISTINCT pupil_id FROM staging.attendance_daily ORDER BY 1").fetchall() == \
        sorted((pseudonymise(drawn, n),) for n, *_ in [TARGET, *OTHERS])  # the warehouse: new key
    w.close()
    with pytest.raises(InterruptedRotationError, match="run `toda keys rotate` again"):
        TodaHome(home=str(paths.home)).pseudonym_key()  # no run keys anything meanwhile

    monkeypatch.setattr(keys, "_rekey_identity", rekey_identity)
    out = CliRunner().invoke(main, ["keys", "rotate", "--home", str(paths.home), "--yes"])
    assert out.exit_code == 0, out.output
    assert paths.pseudonym_key_file.read_text().strip().encode() == drawn
    assert not rotating_file(paths.pseudonym_key_file).exists()
    new = {n: pseudonymise(drawn, n) for n, *_ in [TARGET, *OTHERS]}
    w = duckdb.connect(str(paths.warehouse))
    for table in ("staging.attendance_daily", "staging.pupil_registry", "marts.pupil_features"):
        assert {p for (p,) in w.execute(f"SELECT DISTINCT pupil_id FROM {table}").fetchall()} == set(new.values())
    w.close()
    from toda_platform.identity import IdentityStore

    assert set(IdentityStore(paths.identity).lookup(new.values())) == set(new.values())
    assert set(audit_subjects.held()) == {new[TARGET[0]]}


# ---------------------------------------------------------------------------------------------
# A format-1 log (pseudonyms in the entries) is verified as it was, then upgraded
# ---------------------------------------------------------------------------------------------

OLD_LOG = r"""
import json, sys
from django.core.management import call_command
from portal.commands import setup
setup()
call_command("migrate", "portal", "0001", verbosity=0)
from django.db import connection
from django.utils import timezone
from portal.audit import GENESIS, _witness, entry_hash_v1
class E: pass
prev = GENESIS
rows = json.loads(sys.argv[1])
with connection.cursor() as c:
    for seq, (action, ids, detail) in enumerate(rows, 1):
        e = E()
        e.seq, e.at, e.username, e.role, e.action, e.school_code = seq, timezone.now().replace(microsecond=0), "u", "principal", action, "B1"
        e.purpose, e.outcome, e.detail, e.prev_hash = "", "ok", detail, prev
        h = entry_hash_v1(e, " ".join(ids))
        c.execute("INSERT INTO portal_auditentry (seq, at, username, role, action, school_code, pupil_ids, purpose, "
                  "outcome, detail, prev_hash, entry_hash) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                  [seq, e.at, e.username, e.role, action, "B1", " ".join(ids), "", "ok", detail, prev, h])
        _witness(seq, h)
        prev = h
    if len(sys.argv) > 2:
        c.execute("UPDATE portal_auditentry SET detail = 'tampered' WHERE seq = 2")
"""


def _old_log(paths, rows, *, tamper=False):
    (paths.home / "portal").mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "TODA_HOME": str(paths.home)}
    r = subprocess.run([sys.executable, "-c", OLD_LOG, json.dumps(rows), *(["tamper"] if tamper else [])], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]


def _toda(paths, *args):
    env = {**os.environ, "TODA_HOME": str(paths.home)}
    return subprocess.run([sys.executable, "-m", "toda_platform.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_format_1_log_is_verified_then_rewritten_with_commitments(paths, key):
    living, erased = pseudonymise(key, "20170002"), pseudonymise(key, "20170001")
    erasure.add_erased(paths, [(erasure.token(erased), None)])  # erased before the upgrade
    rows = [["view_pupil", [living], ""], ["view_school", [living, erased], "2 listed"],
            ["support_decision", [erased], f"P20241105101010-{erased[:6]}-1 home_visit"],
            ["view_pupil", [erased], ""]]
    _old_log(paths, rows)
    db = paths.home / "portal" / "portal.sqlite3"
    assert _bytes_hold(db, [living, erased])  # format 1: the pseudonyms themselves

    out = portal(paths, ["about", living], ["about", erased], ["verify"], ["entries"])  # migrates first
    assert out["verify"][0] and out["verify"][1] == 5, out["verify"]
    entries = out["entries"]
    assert entries[4][1] == "audit_format" and "verified intact before (4 entries)" in entries[4][3]
    assert entries[2][3] == "P20241105101010-＊-1 home_visit"
    assert out["about"] == {living: [1, 2], erased: []}  # the erased pupil is not re-indexed
    assert set(audit_subjects.held()) == {living}
    # the pupil erased before stays one anonymous subject across their entries
    assert entries[2][2] == entries[3][2] and entries[2][2] in entries[1][2].split()
    for p in _portal_files(paths):
        assert not _bytes_hold(p, [living, erased]), p  # rewritten, and the old pages vacuumed
    assert _toda(paths, "audit", "verify").returncode == 0


def test_a_broken_format_1_log_is_not_upgraded(paths, key):
    _old_log(paths, [["view_pupil", [pseudonymise(key, "1")], ""], ["view_pupil", [pseudonymise(key, "2")], ""],
                     ["view_pupil", [pseudonymise(key, "3")], ""]], tamper=True)
    r = _toda(paths, "audit", "verify")
    assert r.returncode != 0 and "is broken, so it is not upgraded" in r.stderr and "entry #2" in r.stderr
    with sqlite3.connect(paths.home / "portal" / "portal.sqlite3") as c:
        cols = [row[1] for row in c.execute("PRAGMA table_info(portal_auditentry)")]
        assert "pupil_ids" in cols and "subjects" not in cols  # left as it was, as evidence


def test_toda_audit_who_answers_by_number_and_is_itself_audited(paths, key):
    pid = pseudonymise(key, TARGET[0])
    portal(paths, ["record", "view_pupil", "teacher", [pid], ""], ["record", "view_pupil", "teacher", ["x" * 16], ""])
    r = _toda(paths, "audit", "who", "--student-number", TARGET[0])
    assert r.returncode == 0, r.stderr
    assert "#1 " in r.stdout and "#2 " not in r.stdout and "1 entries name this pupil" in r.stdout
    out = portal(paths, ["about", pid], ["entries"])
    assert out["about"][pid] == [1, 3] and out["entries"][2][1] == "audit_search"


# ---------------------------------------------------------------------------------------------
# Erasure tokens outlive a key rotation
# ---------------------------------------------------------------------------------------------


def test_an_erased_pupil_stays_out_after_a_key_rotation(paths, key, monkeypatch):
    from toda_platform.governance.keys import KeyRotationError, rotate

    con = _rotatable_city(paths, key, monkeypatch, derived=False)
    originals = {p: p.read_bytes() for p in paths.landing.rglob("*.csv")}
    erasure.erase(con, paths, key, TARGET[0], "保護者からの削除請求")
    lines = erasure.erased_file(paths).read_text().splitlines()
    # the pupil and their resident number: each a pseudonym token and a number token
    assert len(erasure.erased_number_tokens(paths)) == 2 and erasure.legacy_tokens(paths) == set()
    assert erasure.erased_number_tokens(paths, key) == set()  # same key: no file is read for numbers
    assert not [ln for ln in lines if TARGET[0] in ln or TARGET[1] in ln]

    # the same erasure as recorded before number tokens: rotation refuses, changing nothing
    erasure.erased_file(paths).write_text("".join(ln.split()[0] + "\n" for ln in lines))
    with pytest.raises(KeyRotationError, match="2 erased pupils or residents"):
        rotate(con, paths)
    assert paths.pseudonym_key_file.read_text().strip() == key.decode()
    # erasing the pupil again adds their number token; the resident's 宛名番号 is gone with the registry row
    erasure.erase(con, paths, key, TARGET[0], "番号トークンの追加")
    assert erasure.legacy_tokens(paths) == {erasure.token(pseudonymise(key, TARGET[1]))}
    with pytest.raises(KeyRotationError, match="1 erased pupils or residents"):
        rotate(con, paths)
    erasure.erased_file(paths).write_text("\n".join(lines) + "\n")
    rotate(con, paths)
    new_key = paths.pseudonym_key_file.read_text().strip().encode()
    assert new_key != key and len(erasure.erased_number_tokens(paths, new_key)) == 2
    staged = con.execute("SELECT count(*) FROM staging.attendance_daily").fetchone()[0]

    # the department re-sends its original exports, the pupil in them: under the new key too, they
    # stay out — the numbers are recognised by their tokens
    for path, data in originals.items():
        (path.parent / f"resent_{path.name}").write_bytes(data)
    _ingest_all(con, paths, new_key)
    new_target = pseudonymise(new_key, TARGET[0])
    new_resident = pseudonymise(new_key, TARGET[1])
    assert con.execute("SELECT count(*) FROM staging.attendance_daily").fetchone()[0] == staged == 8
    assert con.execute("SELECT count(*) FROM staging.pupil_registry WHERE pupil_id = ?",
                       [new_target]).fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM staging.infant_checkup WHERE resident_id = ?",
                       [new_resident]).fetchone()[0] == 0
    erased_rows = con.execute("SELECT sum(json_extract(drop_reasons, '$.erased')::INT) FROM staging.file_manifest "
                              "WHERE file_name LIKE 'resent_%'").fetchone()[0]
    con.close()
    assert erased_rows == 2 + 4 + 1
    assert erasure.token(new_target) in erasure.erased_tokens(paths)  # recognised: now on the list under this key
    assert erasure.erased_number_tokens(paths, new_key) == set()
    needles = [new_target, new_resident, TARGET[0], TARGET[1], TARGET[2]]
    for p in paths.archive.rglob("*.csv"):  # the archived copies of the re-sent files were rewritten too
        text = p.read_bytes().decode("utf-8", "replace") + p.read_bytes().decode("cp932", "replace")
        assert not [n for n in needles if n in text], p


# ---------------------------------------------------------------------------------------------
# Retention on a monthly schedule
# ---------------------------------------------------------------------------------------------


def test_retention_runs_monthly_in_tokyo_and_its_job_drops_the_expired_rows(paths, key, monkeypatch):
    from assets import schedules
    from toda_platform.definitions import build_definitions

    monkeypatch.setenv("TODA_DEMO", "0")
    monkeypatch.setenv("TODA_PSEUDONYM_KEY", "k" * 32)
    defs = build_definitions(paths)
    schedule = defs.resolve_schedule_def("monthly_retention")
    assert (schedule.cron_schedule, schedule.execution_timezone, schedule.job_name) == \
        ("0 3 1 * *", "Asia/Tokyo", "retention_job")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    job = defs.resolve_job_def("retention_job")
    assert job.tags[WRITER_TAG] == "warehouse"
    with dg.build_schedule_context(scheduled_execution_time=dt.datetime(2026, 11, 30, 18, 0, tzinfo=dt.timezone.utc),
                                   resources={"toda": defs.resources["toda"]}) as ctx:
        [request] = schedule.evaluate_tick(ctx).run_requests
    # 03:00 on 1 December in Tokyo is still 30 November in UTC: the day counted from is Tokyo's
    assert request.run_config == {"ops": {"apply_retention": {"config": {"today": "2026-12-01"}}}}

    k = b"k" * 32
    _land_city(paths)
    con = duckdb.connect(str(paths.warehouse))
    _ingest_all(con, paths, k)
    con.close()
    portal(paths)  # the portal's database, with two case-meeting entries: 2019 (expired) and 2024
    with sqlite3.connect(paths.home / "portal" / "portal.sqlite3") as db:
        db.executemany("INSERT INTO portal_supportentry (case_id, pupil_id, school_code, decided_on, risk_band, "
                       "action, agency, person_in_charge, review_on, outcome, created_by, created_at, updated_at, "
                       "last_file) VALUES (?, ?, 'B1', ?, '赤', 'home_visit', 'school', '担任', ?, '', 'u', ?, ?, '')",
                       [[f"P{d}", pseudonymise(k, n), d, d, d, d] for d, n in
                        (("2019-06-10", TARGET[0]), ("2024-06-10", OTHERS[0][0]))])
    result = job.execute_in_process(
        run_config={"ops": {"apply_retention": {"config": {"today": TODAY.isoformat()}}}},
        instance=dg.DagsterInstance.ephemeral())
    assert result.success
    [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    meta = {k: getattr(v, "value", v) for k, v in output.event_specific_data.metadata.items()}
    assert meta["rows_removed"] == 9 and meta["files_removed"] == 4 and meta["today"] == "2026-11-30"
    assert meta["tables"] == {"staging.attendance_daily": 6, "staging.pupil_registry": 3}
    assert "9 rows and 4 files, 1 portal case-meeting entries removed" in meta["outcome"]
    assert meta["portal_entries_removed"] == 1
    with sqlite3.connect(paths.home / "portal" / "portal.sqlite3") as db:
        assert db.execute("SELECT decided_on FROM portal_supportentry").fetchall() == [("2024-06-10",)]
    con = duckdb.connect(str(paths.warehouse))
    assert con.execute("SELECT min(known_date) FROM staging.attendance_daily").fetchone()[0] >= dt.date(2020, 11, 30)
    assert con.execute("SELECT count(*) FROM staging.attendance_daily").fetchone()[0] == 6
    con.close()

    # a demo home (a synthetic city's truth folder): the schedule skips, saying why
    monkeypatch.delenv("TODA_DEMO")
    paths.truth.mkdir()
    with dg.build_schedule_context(scheduled_execution_time=dt.datetime(2026, 11, 30, 18, 0, tzinfo=dt.timezone.utc),
                                   resources={"toda": defs.resources["toda"]}) as ctx:
        tick = schedule.evaluate_tick(ctx)
    assert tick.run_requests == [] and "demo home" in tick.skip_message
    assert schedules.retention_decision(defs.resources["toda"].paths) is not None


# ---------------------------------------------------------------------------------------------
# The portal: an auditor asks who looked at a pupil
# ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_auditor_finds_who_looked_at_a_pupil_and_others_may_not_ask(login):
    from portal import audit

    principal = login("principal_b1")
    assert principal.get("/pupils/p1/").status_code == 200
    assert principal.get(f"/schools/{B1}/").status_code == 200
    assert principal.get("/audit/?pupil_id=p1").status_code == 403  # not entitled
    page = login("auditor").get("/audit/?pupil_id=p1")
    assert page.status_code == 200
    body = page.content.decode()
    table = body[body.index('id="about"'):body.index("</table>", body.index('id="about"'))]
    assert table.count("<tr><td>") == 2 and "view_pupil" in table and "view_school" in table
    assert "principal_b1" in table
    assert [e.action for e in audit.about("p1")] == ["view_pupil", "view_school", "audit_search"]
    assert login("auditor").get("/audit/?pupil_id=bad%20id").status_code == 200  # refused by the form


def test_the_auditors_search_in_a_browser(live_server, city, browser, transactional_db):  # noqa: F811
    from portal.commands import add_user
    from tests.test_portal_browser import ARTIFACTS, PASSWORD, _logged_in

    add_user("kocho", "principal", PASSWORD, school=B1)
    add_user("kansa", "auditor", PASSWORD)
    page = _logged_in(browser, live_server, "kocho")
    page.wait_for_url(f"**/schools/{B1}/")
    page.goto(f"{live_server.url}/pupils/p1/")
    page.close()
    page = _logged_in(browser, live_server, "kansa")
    page.wait_for_url("**/audit/")
    page.fill("#id_pupil_id", "p1")
    page.click("form[method=get] button[type=submit]")
    page.wait_for_selector("#about")
    rows = page.locator("#about tbody tr").all_inner_texts()
    assert [r.split("\t")[2:5] for r in rows] == [["kocho", "principal", "view_school"],
                                                  ["kocho", "principal", "view_pupil"]]
    page.screenshot(path=str(ARTIFACTS / "audit_search_desktop.png"), full_page=True)
    assert (ARTIFACTS / "audit_search_desktop.png").stat().st_size > 20_000
