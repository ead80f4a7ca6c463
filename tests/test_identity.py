"""The identity store: replaces exactly the (year, school) pairs a registry file covers."""

import os
import stat

import pytest

from toda_platform.identity import IdentityRecord, IdentityStore


def rec(pid, year=2025, school="B111111111111", name="山田 太郎", **kw):
    return IdentityRecord(pid, year, school, name=name, **kw)


def test_replace_keeps_other_schools_and_years(tmp_path):
    store = IdentityStore(tmp_path / "identity")
    store.replace([(2025, "B1"), (2025, "B2")], [rec("a", school="B1"), rec("b", school="B2")])
    store.replace([(2024, "B1")], [rec("a", year=2024, school="B1", name="旧")])
    # a correction for B1 only: b (B2) and a's 2024 row stay
    store.replace([(2025, "B1")], [rec("c", school="B1", name="髙橋 花子")])
    assert store.count() == 3
    found = store.lookup(["a", "b", "c", "zz"])
    assert found["a"].name == "旧" and found["a"].school_year == 2024
    assert found["b"].name == "山田 太郎"
    assert found["c"].name == "髙橋 花子"
    assert "zz" not in found
    assert [r.pupil_id for r in store.for_school("B1", 2025)] == ["c"]


def test_private_files_and_read_only(tmp_path):
    store = IdentityStore(tmp_path / "identity")
    assert IdentityStore(tmp_path / "identity", read_only=True).lookup(["a"]) == {}
    store.replace([(2025, "B1")], [rec("a", school="B1")])
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.folder).st_mode) == 0o700
    ro = IdentityStore(tmp_path / "identity", read_only=True)
    assert ro.lookup(["a"])["a"].name == "山田 太郎"
    with pytest.raises(Exception):
        ro.replace([(2025, "B1")], [])
    assert store.erase("a") == 1 and store.count() == 0
