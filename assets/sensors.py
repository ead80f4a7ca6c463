"""React to new files in the landing zone; refresh everything nightly."""


import hashlib
import json
import time

import dagster as dg

from assets.sources import staging_key
from resources.toda import TodaHome
from toda_platform.catalogue import CATALOGUE
from toda_platform.ingest import landed_files

def landing_signature(toda: TodaHome, source_key: str, now: float | None = None) -> str | None:
    """A fingerprint of the settled files of one landing folder (None when there are none).

    "Settled" is the ingestion's own rule (``scan_landing``: untouched for TODA_SETTLE_SECONDS),
    so the sensor and a manual or nightly run agree on which files are complete."""
    now = time.time() if now is None else now
    files = [(p.name, st.st_size, st.st_mtime_ns)
             for p in landed_files(toda.paths.landing_dir(source_key), now=now) if (st := p.lstat())]
    if not files:
        return None
    return hashlib.sha256(json.dumps(sorted(files)).encode()).hexdigest()[:16]


@dg.sensor(
    name="landing_zone_sensor",
    minimum_interval_seconds=60,
    target=dg.AssetSelection.groups("sources"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts a staging run for each source whose landing folder gained or changed a "
                "settled (complete) file.",
)
def landing_zone_sensor(context: dg.SensorEvaluationContext, toda: TodaHome):
    cursor = json.loads(context.cursor) if context.cursor else {}
    requests = []
    for key in CATALOGUE:
        sig = landing_signature(toda, key)
        if sig is not None and cursor.get(key) != sig:
            cursor[key] = sig
            requests.append(dg.RunRequest(run_key=f"{key}:{sig}", asset_selection=[staging_key(key)]))
    context.update_cursor(json.dumps(cursor, sort_keys=True))
    return requests or dg.SkipReason("no new or changed files in the landing zone")


# Dagster creates a stopped default sensor for automation conditions; this one is on from the
# start, so an asset declared eager (marts/school_aggregates) follows its sources by itself.
automation_sensor = dg.AutomationConditionSensorDefinition(
    name="automation_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Evaluates the assets' automation conditions (marts/school_aggregates: eager, "
                "once its sources' blocking checks passed) and starts the runs they request.",
)


nightly_refresh = dg.ScheduleDefinition(
    name="nightly_refresh",
    target=dg.AssetSelection.all(),
    cron_schedule="0 21 * * *",
    execution_timezone="Asia/Tokyo",
    description="Materialise everything each evening, after the school day's attendance is in.",
)
