"""The portal's security tests (issue 10): each can fail."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta

import duckdb
import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from portal import audit
from portal.models import AuditEntry
from tests.portal_city import NAMES
from tests.portal_fixtures import PASSWORD, city, login, published_home, users  # noqa: F401
from tests.tiny_city import B1, C1

pytestmark = pytest.mark.django_db

SAMPLE = {"int": "1", "str": "x1", "slug": "x1", "path": "x1/y", "uuid": "00000000-0000-0000-0000-000000000000"}
PUBLIC = {"/login/", "/admin/login/", "/notice/"}  # the login forms; the notice to families


def _paths_of(patterns, prefix=""):
    for p in patterns:
        route = str(p.pattern)
        if hasattr(p.pattern, "regex") and route.startswith("^"):  # admin's regex routes
            route = re.sub(r"\(\?P<\w+>([^)]*)\)", lambda m: m.group(1).split("|")[0] or "x", route)
            route = route.lstrip("^").rstrip("$").replace("\\Z", "")
        route = re.sub(r"<(?:(\w+):)?\w+>", lambda m: SAMPLE[m.group(1) or "str"], route)
        if isinstance(p, URLResolver):
            yield from _paths_of(p.url_patterns, prefix + route)
        elif isinstance(p, URLPattern):
            yield "/" + prefix + route


def test_anonymous_refused_on_every_url_pattern():
    urls = sorted(set(_paths_of(get_resolver().url_patterns)))
    assert len(urls) > 20 and "/pupils/x1/" in urls and "/admin/auth/user/" in urls
    c = Client()
    for url in urls:
        for method in ("get", "post"):
            resp = getattr(c, method)(url)
            if url in PUBLIC:
                continue
            assert resp.status_code in (302, 403, 405), (method, url, resp.status_code)
            if resp.status_code == 302:
                assert "/login/" in resp.url, (url, resp.url)


def test_principal_of_a_gets_403_on_school_b(login):
    c = login("principal_b1")
    before = AuditEntry.objects.filter(outcome="refused").count()
    on_list = c.get(f"/schools/{C1}/")
    on_pupil = c.get("/pupils/p2/")
    on_export = c.post(f"/schools/{C1}/export.csv", {"purpose": "case_meeting"})
    on_chart = c.get("/pupils/p2/timeline.png")
    unknown = c.get("/pupils/ffffffffffffffff/")
    assert [r.status_code for r in (on_list, on_pupil, on_export, on_chart, unknown)] == [403] * 5
    # the same answer whether the pupil exists or not
    strip = lambda r: re.sub(rb'value="[^"]+"', b"", r.content)  # noqa: E731 (the masked CSRF token)
    assert strip(on_pupil) == strip(unknown)
    assert AuditEntry.objects.filter(outcome="refused").count() == before + 5
    assert audit.about("ffffffffffffffff").filter(outcome="refused").exists()


def test_csrf_enforced_on_every_form(users, city):
    c = Client(enforce_csrf_checks=True)
    assert c.post("/login/", {"username": "principal_b1", "password": PASSWORD}).status_code == 403
    c.force_login(users["principal_b1"], backend="django.contrib.auth.backends.ModelBackend")
    posts = {"/pupils/p1/support/": {"decided_on": "2024-11-01", "action": "monitoring", "agency": "school",
                                     "person_in_charge": "x", "review_on": "2024-12-01"},
             "/support/P1/outcome/": {"outcome": "improved"},
             f"/schools/{B1}/export.csv": {"purpose": "case_meeting"},
             "/logout/": {}, "/audit/incidents/1/close/": {"note": "x"}}
    for url, data in posts.items():
        assert c.post(url, data).status_code == 403, url
    page = c.get("/pupils/p1/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    ok = c.post("/pupils/p1/support/", {**posts["/pupils/p1/support/"], "csrfmiddlewaretoken": token})
    assert ok.status_code == 302


def test_names_are_escaped(login):
    c = login("principal_b1")
    for url in (f"/schools/{B1}/", "/pupils/p1/"):
        html = c.get(url).content.decode()
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&quot;山田 葵" in html


@pytest.mark.parametrize("query", [{"grade": "5' OR '1'='1"}, {"class_name": "1; DROP TABLE risk; --"},
                                   {"grade": "5 UNION SELECT * FROM meta"}])
def test_sql_ish_filter_input_is_harmless(login, query):
    c = login("principal_b1")
    resp = c.get(f"/schools/{B1}/", query)
    assert resp.status_code == 200 and "条件が正しくありません" in resp.content.decode()
    assert c.get(f"/schools/{B1}/").status_code == 200  # the snapshot is intact


def test_repeated_wrong_passwords_lock_the_account(users):
    c = Client()
    for _ in range(5):
        assert c.post("/login/", {"username": "principal_b1", "password": "wrong"}).status_code in (200, 429)
    locked = c.post("/login/", {"username": "principal_b1", "password": PASSWORD})
    assert locked.status_code == 429 and "ロック" in locked.content.decode()
    assert "_auth_user_id" not in c.session
    assert AuditEntry.objects.filter(action="login", outcome="failed", username="principal_b1").count() >= 5
    other = Client().post("/login/", {"username": "vp_b1", "password": PASSWORD})
    assert other.status_code == 302  # another account is not locked


def test_login_audited_and_sessions_expire(users, settings, city):
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    c = Client()
    assert c.post("/login/", {"username": "principal_b1", "password": PASSWORD}).status_code == 302
    assert AuditEntry.objects.filter(action="login", outcome="ok", username="principal_b1").exists()
    assert settings.SESSION_COOKIE_AGE <= 30 * 60 and settings.SESSION_SAVE_EVERY_REQUEST
    assert c.get(f"/schools/{B1}/").status_code == 200
    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))
    resp = c.get(f"/schools/{B1}/")
    assert resp.status_code == 302 and "/login/" in resp.url


def test_password_hash_is_argon2(db):
    from portal.commands import add_user

    user = add_user("hashed", "board", PASSWORD)  # the settings as configured, no test override
    assert user.password.startswith("argon2$argon2id$") and PASSWORD not in user.password
    assert user.check_password(PASSWORD) and not user.check_password(PASSWORD + "x")


def test_security_headers(login):
    resp = login("principal_b1").get(f"/schools/{B1}/")
    csp = resp["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert resp["X-Frame-Options"] == "DENY"
    assert resp["X-Content-Type-Options"] == "nosniff"
    assert resp["Referrer-Policy"] == "same-origin"
    assert resp.cookies["sessionid"]["httponly"]


def _chain(n=6):
    for i in range(n):
        audit.record("view_school", username=f"u{i}", school_code=B1, pupil_ids=[f"p{i}"])
    assert audit.verify().ok


def test_audit_chain_detects_an_edited_entry(db):
    _chain()
    AuditEntry.objects.filter(seq=3).update(subjects="0" * 32)
    v = audit.verify()
    assert not v.ok and v.bad_seq == 3 and "hash" in v.reason


def test_audit_chain_detects_a_deleted_entry(db):
    _chain()
    AuditEntry.objects.filter(seq=4).delete()
    v = audit.verify()
    assert not v.ok and v.bad_seq == 4 and "deleted" in v.reason


def test_audit_chain_detects_the_newest_entries_deleted(db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _chain()
    assert audit.verify().ok
    AuditEntry.objects.filter(seq__gte=5).delete()  # covering one's tracks: the tail goes
    v = audit.verify()
    assert not v.ok and v.bad_seq == 5 and "missing" in v.reason


def test_audit_chain_detects_reordered_entries(db):
    _chain()
    a, b = AuditEntry.objects.get(seq=2), AuditEntry.objects.get(seq=5)
    a.seq, b.seq = 1000, 2
    a.save(); b.save()
    a.seq = 5
    a.save()
    v = audit.verify()
    assert not v.ok and v.bad_seq == 2


def test_toda_audit_verify_exits_non_zero_naming_the_entry(tmp_path):
    env = {"TODA_HOME": str(tmp_path / "h"), "PATH": "/usr/bin:/bin"}
    toda = [sys.executable, "-m", "toda_platform.cli"]
    r = subprocess.run([*toda, "users", "add", "p", "--role", "principal", "--school", B1, "--password-stdin"],
                       input=PASSWORD + "\n", env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ok = subprocess.run([*toda, "audit", "verify"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0 and "intact" in ok.stdout
    db = tmp_path / "h" / "portal" / "portal.sqlite3"
    import sqlite3
    with sqlite3.connect(db) as con:
        con.execute("UPDATE portal_auditentry SET detail = 'tampered' WHERE seq = 2")
    bad = subprocess.run([*toda, "audit", "verify"], env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and "entry #2" in bad.stdout
    listed = subprocess.run([*toda, "users", "list"], env=env, capture_output=True, text=True)
    assert "principal" in listed.stdout and B1 in listed.stdout


def test_no_name_or_kana_in_warehouse_snapshots_or_reports(login, paths):
    c = login("principal_b1")
    c.get(f"/schools/{B1}/")
    c.get("/pupils/p1/")
    needles = [s for name, kana, _ in NAMES.values() for s in (name, kana)]
    for db_file in [paths.warehouse, *paths.serving.glob("snapshot_*.duckdb")]:
        con = duckdb.connect(str(db_file), read_only=True)
        try:
            for schema, table in con.execute("SELECT table_schema, table_name FROM information_schema.tables "
                                             "WHERE table_type = 'BASE TABLE'").fetchall():
                text = con.execute(f'SELECT string_agg(CAST(t AS VARCHAR), \'|\') FROM "{schema}"."{table}" t'
                                   ).fetchone()[0] or ""
                for n in needles:
                    assert n not in text, (db_file.name, table, n)
        finally:
            con.close()
    for f in paths.reports.rglob("*") if paths.reports.exists() else []:
        if f.is_file():
            body = f.read_bytes().decode("utf-8", errors="ignore")
            assert not any(n in body for n in needles), f
    assert not any(n in e.detail + e.purpose for e in AuditEntry.objects.all() for n in needles)
