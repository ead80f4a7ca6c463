"""Fixtures of the portal tests: a published tiny city and one user per role."""

from __future__ import annotations

import pytest

from tests.portal_city import build_city
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


@pytest.fixture
def city(paths):
    return build_city(paths)


@pytest.fixture
def users(db):
    from portal.commands import add_user

    return {name: add_user(name, role, PASSWORD, school=school, agency=agency)
            for name, (role, school, agency) in USERS.items()}


@pytest.fixture
def login(client, users, city):
    def as_user(name):
        client.force_login(users[name], backend="django.contrib.auth.backends.ModelBackend")
        return client
    return as_user
