"""Publication to the school portal (group ``serving``).

``serving/snapshot`` follows ``outputs/risk_scores`` — which the drift gate's blocking check
``drift_within_limit`` stops — and copies what the portal's pages need into a new immutable
DuckDB file under ``$TODA_HOME/serving/``, then swaps ``serving/current`` to it (portal/serving.py).
The portal reads only that file; it never opens the warehouse.
"""

import dagster as dg
from dagster_duckdb import DuckDBResource

from assets.metadata import date_text
from assets.models import KNOWN_CASES_KEY, RISK_SCORES_KEY
from assets.outputs import HARDSHIP_KEY, KARTE_KEY, SUPPORT_KEY
from assets.sources import staging_key
from resources.toda import TodaHome

SNAPSHOT_KEY = dg.AssetKey(["serving", "snapshot"])
# the 学校カルテ, support effects and hardship screen: after them in one run (toda demo), and a new
# snapshot when one of them is rematerialised
OUTPUT_KEYS = (KARTE_KEY, SUPPORT_KEY, HARDSHIP_KEY)
# a new list is published as soon as it exists and its own gate passed. Not eager() as it stands:
# - eager waits until no dependency is missing, and an outputs table never materialised (a city
#   without support records yet) must not stop the risk list from reaching the schools; the
#   snapshot leaves out what is not there and the pages say so;
# - a restaged source does not trigger it: every timeline source is one the list reads, so the
#   landing is followed by a rescoring run (sensor rescore_after_landing) that ends with the
#   snapshot. Triggered by the staging table itself, the automation sensor would publish the new
#   timelines beside the previous day's list minutes before that run (the group, not the keys:
#   a deployment puts each city's keys under its name, and the group names stay)
STAGING_IGNORED = dg.AssetSelection.groups("sources")
SNAPSHOT_AUTOMATION = (
    dg.AutomationCondition.eager()
    .without(~dg.AutomationCondition.any_deps_missing())
    .replace("any_deps_updated", dg.AutomationCondition.any_deps_updated().ignore(STAGING_IGNORED))
    & dg.AutomationCondition.all_deps_blocking_checks_passed())
TIMELINE_SOURCES = ("pupil_registry", "school_master", "attendance_daily", "nurse_office_visits",
                    "mood_checkin", "qu_survey", "school_life_survey", "bullying_records",
                    "counseling_records", "support_records")


@dg.asset(
    key=SNAPSHOT_KEY,
    group_name="serving",
    kinds={"duckdb"},
    deps=[RISK_SCORES_KEY, KNOWN_CASES_KEY, *(staging_key(s) for s in TIMELINE_SOURCES),
          *OUTPUT_KEYS],
    automation_condition=SNAPSHOT_AUTOMATION,
    description="Immutable serving snapshot for the school portal: the newest risk list with "
                "reasons, bands, trend and 新規 against the previous list, known cases with their "
                "absence streaks, and per-pupil timelines of this school year (weekly attendance, "
                "nurse visits, mood, surveys, bullying and counselling events, support records); the "
                "学校カルテ, support effects and hardship screen tables with their charts. "
                "No names. Written to a new file, then serving/current is swapped atomically.",
)
def serving_snapshot(context: dg.AssetExecutionContext, toda: TodaHome,
                     warehouse: DuckDBResource) -> dg.MaterializeResult:
    from portal.serving import build_snapshot

    with warehouse.get_connection() as con:
        try:
            published = build_snapshot(con, toda.paths)
        except LookupError as e:  # no list yet (no champion): the portal keeps what it shows
            context.log.warning(f"nothing to publish: {e}")
            return dg.MaterializeResult(metadata={"note": f"nothing published: {e}"})
    context.log.info(f"serving snapshot {published.path.name} for {published.as_of_date} "
                     f"in {published.seconds:.1f} s")
    return dg.MaterializeResult(metadata={
        "snapshot": dg.MetadataValue.path(str(published.path)),
        "as_of_date": date_text(published.as_of_date),
        "previous_as_of_date": date_text(published.previous_as_of_date),
        "rows": dg.MetadataValue.json(published.rows),
        "seconds": round(published.seconds, 2),
    })


serving_assets = [serving_snapshot]
