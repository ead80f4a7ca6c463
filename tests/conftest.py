"""Shared fixtures: every test gets its own TODA_HOME and pseudonym key."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest

from toda_platform.settings import Paths

TEST_KEY = "test-key-not-secret"

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Tests land a file and read it at once: the wait for a file to settle (30 s in production) is
# off unless a test sets it (tests/test_landing.py does).
os.environ["TODA_SETTLE_SECONDS"] = "0"
# Tests run on synthetic cities with a short test key: demo mode (tests/test_governance.py turns
# it off to see the platform refuse a weak key).
os.environ.setdefault("TODA_DEMO", "1")
# Tests run on Toda's city file unless a test says otherwise (a home's city.toml, or TODA_CITY).
os.environ.pop("TODA_CITY", None)


@pytest.fixture
def paths(tmp_path, monkeypatch) -> Paths:
    home = tmp_path / "toda"
    monkeypatch.setenv("TODA_HOME", str(home))
    monkeypatch.setenv("TODA_PSEUDONYM_KEY", TEST_KEY)
    p = Paths.from_env(home)
    p.home.mkdir(parents=True)
    return p


@pytest.fixture(autouse=True)
def _audit_witness(tmp_path, monkeypatch):
    """Each test's portal audit log gets its own witness file (a test database is rolled back;
    a witness shared across tests would remember entries the database no longer has)."""
    monkeypatch.setenv("TODA_AUDIT_WITNESS", str(tmp_path / "audit-head.log"))
    # ... and its own subject store (the secrets behind the log's commitments)
    monkeypatch.setenv("TODA_AUDIT_SUBJECTS", str(tmp_path / "audit-subjects.sqlite"))


@pytest.fixture
def key() -> bytes:
    return TEST_KEY.encode()


@pytest.fixture
def con(paths):
    connection = duckdb.connect(str(paths.warehouse))
    yield connection
    connection.close()


def write_csv(path: Path, header: list[str], rows: list[list[str]], *, encoding: str = "utf-8-sig",
              newline: str = "\r\n", trailer: str = "", mtime: float | None = None) -> Path:
    """Write a CSV the way a department's system does (no quoting unless needed)."""
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator=newline).writerows([header, *rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((buf.getvalue() + trailer).encode(encoding))
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings):
    """The portal's test database is a file (portal/settings.py) in WAL mode: Django removes the
    file after a run but not its ``-wal``/``-shm`` companions, which SQLite would replay into the
    next run's new file of the same name. Remove them (and any file left by a killed run) first."""
    from django.conf import settings

    name = settings.DATABASES["default"].get("TEST", {}).get("NAME")
    if name and not name.startswith(":memory:") and "mode=memory" not in name:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(name + suffix).unlink(missing_ok=True)
