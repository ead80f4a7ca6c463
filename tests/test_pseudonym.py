"""The pupil_id formula is exactly the documented one, stable, and the key is handled with care."""

from __future__ import annotations

import hashlib
import hmac
import stat

import pytest
from hypothesis import given, strategies as st

from toda_platform.pseudonym import MissingKeyError, load_key, pseudonymise


def test_matches_the_documented_formula():
    expected = hmac.new(b"k", "20190001".encode(), hashlib.sha256).hexdigest()[:16]
    assert pseudonymise(b"k", "20190001") == expected
    assert pseudonymise(b"k", "２０１９０００１ ") == expected  # NFKC, then strip
    assert pseudonymise(b"other", "20190001") != expected


@given(st.text(alphabet="0123456789", min_size=1, max_size=12))
def test_stable_and_width_insensitive(number):
    full_width = number.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    assert pseudonymise(b"k", number) == pseudonymise(b"k", f" {full_width}\u3000")
    assert len(pseudonymise(b"k", number)) == 16


def test_key_from_env_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("TODA_PSEUDONYM_KEY", " secret ")
    assert load_key(tmp_path / "none.key") == b"secret"


def test_missing_key_is_an_error_unless_asked_to_create(tmp_path, monkeypatch):
    monkeypatch.delenv("TODA_PSEUDONYM_KEY", raising=False)
    key_file = tmp_path / "secrets" / "pseudonym.key"
    with pytest.raises(MissingKeyError, match="TODA_PSEUDONYM_KEY"):
        load_key(key_file)
    key = load_key(key_file, create=True)
    assert len(key) == 64 and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_key(key_file) == key  # created once, then reused
