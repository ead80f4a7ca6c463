"""What the ``toda portal``, ``toda users`` and ``toda audit`` commands do (toda_platform/cli.py
is the thin click layer)."""

from __future__ import annotations

import os


def setup() -> None:
    """Configure Django with the portal's settings (TODA_HOME must be set before)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    ensure_secret_key()
    import django

    django.setup()


def ensure_secret_key() -> None:
    """The key that signs sessions and CSRF tokens: created once per TODA_HOME, mode 0600."""
    import secrets

    from toda_platform.settings import Paths

    path = Paths.from_env().secrets / "portal_secret.key"
    if os.environ.get("TODA_PORTAL_SECRET_KEY") or path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(50) + "\n")


def migrate(verbosity: int = 0) -> None:
    from django.conf import settings
    from django.core.management import call_command

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        from pathlib import Path

        Path(db["NAME"]).parent.mkdir(parents=True, exist_ok=True)
        os.chmod(Path(db["NAME"]).parent, 0o700)
    from portal import audit

    call_command("migrate", interactive=False, verbosity=verbosity)
    if audit.upgraded and db["ENGINE"].endswith("sqlite3"):
        # the format-1 entries' pseudonyms must not linger in free pages or the write-ahead log
        from django.db import connection

        with connection.cursor() as c:
            c.execute("VACUUM")
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def pending_migrations() -> list[str]:
    """The migrations this code has that the portal database has not applied ("app.name"): a
    database copied from an older installation, or a portal not restarted since an upgrade."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{m.app_label}.{m.name}" for m, backwards in plan if not backwards]


def add_user(username: str, role_key: str, password: str, *, school: str = "", agency: str = ""):
    """Create (or update the role and password of) a portal user; validated like the admin."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError
    from django.db import transaction

    from portal.middleware import current_actor
    from portal.models import Profile
    from portal.roles import roles

    available = roles()
    if role_key not in available:
        raise ValueError(f"unknown role {role_key!r}; roles in the config: {', '.join(available)}")
    r = available[role_key]
    if r.scope == "school" and not school:
        raise ValueError(f"role {role_key} needs --school CODE")
    if r.scope == "agency" and not agency:
        raise ValueError(f"role {role_key} needs --agency (e.g. school_counsellor, social_worker)")
    User = get_user_model()
    user = User(username=username)
    try:
        validate_password(password, user)
    except ValidationError as e:
        raise ValueError(" ".join(e.messages)) from None
    token = current_actor.set("cli")
    try:
        with transaction.atomic():
            user, _ = User.objects.get_or_create(username=username)
            user.set_password(password)
            user.is_staff = user.is_superuser = r.manage_users
            user.save()
            Profile.objects.update_or_create(user=user, defaults={
                "role": role_key, "school_code": school if r.scope == "school" else "",
                "agency": agency if r.scope == "agency" else ""})
    finally:
        current_actor.reset(token)
    return user


def list_users() -> list[tuple]:
    from django.contrib.auth import get_user_model

    return [(u.username, getattr(getattr(u, "profile", None), "role", ""),
             getattr(getattr(u, "profile", None), "school_code", ""),
             getattr(getattr(u, "profile", None), "agency", ""), u.is_active, u.last_login)
            for u in get_user_model().objects.select_related("profile").order_by("username")]


def serve(host: str = "127.0.0.1", port: int = 8000, threads: int = 8) -> None:
    from waitress import serve as waitress_serve

    from portal.wsgi import application

    waitress_serve(application, host=host, port=port, threads=threads, ident="toda-portal")
