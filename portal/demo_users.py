"""`make demo`: one demo user per role, passwords printed once (only their hashes are kept)."""

from __future__ import annotations

import secrets

from toda_platform.settings import Paths


def main() -> None:
    from portal.commands import add_user, migrate, setup

    setup()
    migrate()
    from portal.access import snapshot
    from portal.serving import NoSnapshot

    try:
        schools = [s["school_code"] for s in snapshot().query("SELECT school_code FROM schools ORDER BY 1")]
    except NoSnapshot:
        schools = []
    school = schools[0] if schools else ""
    print("\nSchool portal demo users (passwords shown once; change them with "
          "`toda users add NAME --role ROLE --password-stdin`):")
    for name, role, kw in (("demo_board", "board", {}), ("demo_principal", "principal", {"school": school}),
                           ("demo_vice_principal", "vice_principal", {"school": school}),
                           ("demo_case_team", "case_team", {"agency": "social_worker"}),
                           ("demo_auditor", "auditor", {}), ("demo_admin", "admin", {})):
        if role in ("principal", "vice_principal") and not school:
            print(f"  {name}: skipped (no published snapshot, so no school to assign)")
            continue
        password = secrets.token_urlsafe(12)
        add_user(name, role, password, **kw)
        print(f"  {name:20} {role:15} {kw.get('school') or kw.get('agency') or '':15} {password}")
    home = Paths.from_env().home
    print(f"Open the portal:  .venv/bin/toda portal --home {home}   then http://127.0.0.1:8000/")


if __name__ == "__main__":
    main()
