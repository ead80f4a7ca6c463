"""Pseudonymous pupil keys.

``pupil_id`` = the first 16 hex characters of HMAC-SHA256(key, number), where ``number`` is the
pupil number after Unicode NFKC normalisation (full-width digits become ASCII) and stripping of
surrounding whitespace, encoded as UTF-8. The same formula turns a 宛名番号 into ``resident_id``.

The key is the city's secret: the UTF-8 bytes of ``TODA_PSEUDONYM_KEY`` if set, otherwise of the
text in ``$TODA_HOME/secrets/pseudonym.key`` (surrounding whitespace stripped). Any department
holding the key computes the same pseudonym with a few lines of any language, e.g.::

    python -c "import hmac,hashlib,unicodedata,sys; k=open('pseudonym.key').read().strip();
    print(hmac.new(k.encode(), unicodedata.normalize('NFKC', sys.argv[1]).strip().encode(),
    hashlib.sha256).hexdigest()[:16])" 20190001

Without the key a pseudonym cannot be reversed or recomputed from a guessed number.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import unicodedata
from pathlib import Path

KEY_ENV = "TODA_PSEUDONYM_KEY"
PSEUDONYM_HEX_CHARS = 16
# HMAC-SHA256's own block of strength: a shorter key (a word, a date) can be guessed, and with it
# every pseudonym recomputed from a list of pupil numbers
MIN_KEY_BYTES = 32


class MissingKeyError(RuntimeError):
    pass


class WeakKeyError(MissingKeyError):
    pass


class InterruptedRotationError(MissingKeyError):
    pass


def rotating_file(key_file: Path) -> Path:
    """The next key while ``toda keys rotate`` runs; still there after a rotation was interrupted."""
    return key_file.with_name(key_file.name + ".rotating")


def normalise_number(number: str) -> str:
    return unicodedata.normalize("NFKC", number).strip()


def pseudonymise(key: bytes, number: str) -> str:
    digest = hmac.new(key, normalise_number(number).encode("utf-8"), hashlib.sha256)
    return digest.hexdigest()[:PSEUDONYM_HEX_CHARS]


def load_key(key_file: Path, *, create: bool = False, allow_rotating: bool = False) -> bytes:
    """The pseudonym key from the environment, else from ``key_file``.

    With ``create`` a missing file is made with a fresh random key, readable by its owner only
    (mode 0600). Without it a missing key is an error: silently inventing a new key would give
    every pupil a new pseudonym and break every join with earlier data.
    """
    from_env = os.environ.get(KEY_ENV, "").strip()
    if from_env:
        return from_env.encode("utf-8")
    if not allow_rotating and rotating_file(key_file).exists():
        # half the stores under the old key, half under the new: nothing may run until it is done
        raise InterruptedRotationError(
            f"a key rotation was interrupted ({rotating_file(key_file)} is there): run `toda keys rotate` "
            f"again to finish it")
    if key_file.exists():
        text = key_file.read_text(encoding="utf-8").strip()
        if not text:
            raise MissingKeyError(f"the pseudonym key file {key_file} is empty")
        return text.encode("utf-8")
    if not create:
        raise MissingKeyError(
            f"no pseudonym key: set {KEY_ENV} or create {key_file} (`toda demo` creates one)"
        )
    key_file.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(key_file.parent, 0o700)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secrets.token_hex(32) + "\n")
    return key_file.read_text(encoding="utf-8").strip().encode("utf-8")


def require_key(key_file: Path, *, demo: bool, allow_rotating: bool = False) -> bytes:
    """The key a run uses: outside demo mode it must exist and hold at least
    :data:`MIN_KEY_BYTES` bytes, or the platform refuses to start."""
    key = load_key(key_file, allow_rotating=allow_rotating)
    if not demo and len(key) < MIN_KEY_BYTES:
        raise WeakKeyError(
            f"the pseudonym key is {len(key)} bytes; outside demo mode it must be at least {MIN_KEY_BYTES} "
            f"(make one with: python -c 'import secrets; print(secrets.token_hex(32))', keep it in "
            f"{KEY_ENV} or {key_file}, mode 0600)")
    return key


def check_startup_key(key_file: Path, *, demo: bool) -> None:
    """At start-up: in demo mode a missing key is fine (`toda demo` creates one); otherwise the
    key must be there and strong enough."""
    if not demo:
        require_key(key_file, demo=False)
