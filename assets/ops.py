"""Operations of the school portal (group ``ops``): misuse incidents from its audit log.

``ops/access_incidents`` runs the misuse rules (portal/misuse.py, thresholds in roles.toml) over
the portal's audit log and lists the open incidents; its check ``no_open_incidents`` fails while
any is open, so they show red in the Dagster UI until an auditor closes them in the portal.
"""

import os

import dagster as dg

from resources.toda import TodaHome

INCIDENTS_KEY = dg.AssetKey(["ops", "access_incidents"])


def _portal_db(toda: TodaHome) -> bool:
    """Start Django on this home's portal database; False when the portal was never started."""
    home = toda.paths.home
    if not os.environ.get("TODA_PORTAL_DB_ENGINE") and not (home / "portal" / "portal.sqlite3").exists():
        return False
    if toda.deployment:  # a run of one city of the deployment: that city's portal
        os.environ["TODA_HOME"] = str(home)
    os.environ.setdefault("TODA_HOME", str(home))
    from portal.commands import pending_migrations, setup

    setup()
    pending = pending_migrations()
    if pending:  # the rules would fail on a missing table or column, naming neither the cause nor the fix
        raise dg.Failure(
            description=f"the portal database of {home} is behind this code: {len(pending)} migration(s) not "
                        f"applied ({', '.join(pending[:5])}{', …' if len(pending) > 5 else ''}), e.g. a database "
                        f"copied from an older installation. Restart the portal (`toda portal` migrates its "
                        f"database at start); the misuse rules run again at the next half hour.",
            allow_retries=False)
    return True


@dg.asset(key=INCIDENTS_KEY, group_name="ops", kinds={"django", "sqlite"},
          automation_condition=dg.AutomationCondition.on_cron("*/30 * * * *"),
          description="Misuse rules over the portal's audit log (repeated refusals, far more pupils "
                      "than a user's usual day, many schools, exports at night): new hits open "
                      "incidents; lists the open ones.")
def access_incidents(context: dg.AssetExecutionContext, toda: TodaHome) -> dg.MaterializeResult:
    if not _portal_db(toda):
        return dg.MaterializeResult(metadata={"open_incidents": 0, "note": "the portal has no database yet"})
    from portal.misuse import open_incidents, scan

    opened = scan()
    still = open_incidents()
    table = "\n".join(["| day | rule | user | detail |", "|---|---|---|---|"] +
                      [f"| {i.day} | {i.rule} | {i.username} | {i.detail} |" for i in still])
    return dg.MaterializeResult(metadata={"opened_now": len(opened), "open_incidents": len(still),
                                          "incidents": dg.MetadataValue.md(table)})


@dg.asset_check(asset=INCIDENTS_KEY, name="no_open_incidents",
                description="Fails while an incident is open; an auditor closes it in the portal "
                            "(/audit/) with a note.")
def no_open_incidents(toda: TodaHome) -> dg.AssetCheckResult:
    if not _portal_db(toda):
        return dg.AssetCheckResult(passed=True, description="the portal has no database yet")
    from portal.misuse import open_incidents

    still = open_incidents()
    return dg.AssetCheckResult(passed=not still, severity=dg.AssetCheckSeverity.WARN,
                               description=f"{len(still)} open incident(s)",
                               metadata={"open": dg.MetadataValue.json(
                                   [f"{i.day} {i.rule} {i.username}" for i in still])})


ops_assets = [access_incidents]
ops_checks = [no_open_incidents]
