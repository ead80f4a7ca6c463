"""Fixtures of the portal tests: a published tiny city and one user per role."""

from __future__ import annotations

import shutil

import pytest

from tests.portal_city import build_city
from toda_platform.settings import Paths
from tests.tiny_city import B1, C1

PASSWORD = "correct-horse-battery-9"
USERS = {  # username: (role, school, agency)
    "principal_b1": ("principal", B1, ""),
    "principal_c1": ("principal", C1, ""),
    "vp_b1": ("vice_principal", B1, ""),
    "board": ("board", "", ""),
    "ssw": ("case_team", "", "social_worker"),
    "auditor": ("auditor", "", ""),
}


@pytest.fixture(scope="session")
def published_home(tmp_path_factory):
    """The tiny city built and published once per test process; each test gets a copy."""
    home = tmp_path_factory.mktemp("published") / "toda"
    home.mkdir()
    build_city(Paths.from_env(home))
    return home


@pytest.fixture
def city(paths, published_home):
    for name in ("serving", "identity"):
        shutil.copytree(published_home / name, paths.home / name, symlinks=True)
    shutil.copy2(published_home / "warehouse.duckdb", paths.warehouse)
    return paths


@pytest.fixture
def users(db, settings):
    """One user per role. Hashed with a fast hasher: Argon2 (the configured default, see
    test_password_hash_is_argon2) costs ~0.2 s a hash, which adds up over many tests."""
    from portal.commands import add_user

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *settings.PASSWORD_HASHERS]

    return {name: add_user(name, role, PASSWORD, school=school, agency=agency)
            for name, (role, school, agency) in USERS.items()}


@pytest.fixture
def login(client, users, city):
    def as_user(name):
        client.force_login(users[name], backend="django.contrib.auth.backends.ModelBackend")
        return client
    return as_user
