"""The nightly increment: one new school day's files land, `toda refresh` makes the new list.

    .venv/bin/python bench/nightly.py --home H [--next-day D] [--today YYYY-MM-DD]

``H`` is a city home on which everything has been materialised (``toda demo``) and the nightly
refresh has run once since (so the marts have recorded their inputs: ``ml/inputs.py``). The
script generates the same city (its ``truth/generation.json`` config) with ``--today`` moved on
by one day into ``D`` (or uses ``D`` as it is), lands in ``H`` every file whose bytes differ — the
month files re-exported with the new day, as the departments' systems do — and times the
nightly job in this process (what ``toda refresh`` runs), printing each step's seconds and which
as-of dates the marts rebuilt. Nothing is timed that the job does not do.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TODA_SETTLE_SECONDS", "0")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def next_day_city(home: Path, out: Path, today: str | None) -> Path:
    config = json.loads((home / "truth" / "generation.json").read_text())["config"]
    day = today or (dt.date.fromisoformat(config["today"]) + dt.timedelta(days=1)).isoformat()
    if not (out / "landing").is_dir():
        args = [sys.executable, "-m", "toda_platform.cli", "generate", "--home", str(out), "--quiet",
                "--pupils", str(config["pupils"]), "--elementary-schools", str(config["elementary_schools"]),
                "--junior-high-schools", str(config["junior_high_schools"]), "--years", str(config["years"]),
                "--latest-school-year", str(config["latest_school_year"]), "--seed", str(config["seed"]),
                "--today", day]
        subprocess.run(args, check=True, cwd=ROOT)
    return out


def land_changed(home: Path, next_day: Path) -> list[str]:
    """Copy into ``home``'s landing every file of ``next_day`` that is new or has other bytes."""
    landed = []
    for src in sorted((next_day / "landing").rglob("*")):
        if not src.is_file():
            continue
        dst = home / "landing" / src.relative_to(next_day / "landing")
        if dst.exists() and dst.stat().st_size == src.stat().st_size and _sha(dst) == _sha(src):
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.part")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
        landed.append(str(dst.relative_to(home / "landing")))
    return landed


def step_seconds(result) -> dict[str, float]:
    """Each step's seconds, from the run's event log (the events carry no time themselves)."""
    import dagster as dg

    start, out = {}, {}
    for entry in dg.DagsterInstance.get().all_logs(result.run_id):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            start[event.step_key] = entry.timestamp
        elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            out[event.step_key] = entry.timestamp - start.get(event.step_key, entry.timestamp)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", required=True, type=Path)
    ap.add_argument("--next-day", type=Path, help="a generated city one day on (made if missing)")
    ap.add_argument("--today", help="the next day's 'today' (default: the home's today + 1 day)")
    args = ap.parse_args()
    home = args.home.resolve()
    os.environ["TODA_HOME"] = str(home)  # as `toda refresh --home` sets it
    next_day = next_day_city(home, (args.next_day or home.parent / "next_day").resolve(), args.today)
    landed = land_changed(home, next_day)
    print(f"landed {len(landed)} files with new bytes: {', '.join(landed)}")

    from toda_platform.definitions import refresh
    from toda_platform.settings import Paths

    t0 = time.perf_counter()
    result = refresh(Paths.from_env(home))
    wall = time.perf_counter() - t0
    steps = step_seconds(result)
    for key, seconds in sorted(steps.items(), key=lambda kv: -kv[1])[:15]:
        print(f"  {seconds:7.1f} s  {key}")
    for key in ("marts__pupil_features", "marts__labels"):
        # a single-run backfill reports one materialisation per partition, all with the same metadata
        event = next((e for e in result.all_events
                      if e.step_key == key and e.event_type_value == "ASSET_MATERIALIZATION"), None)
        if event is None:
            continue
        meta = event.event_specific_data.materialization.metadata
        per_date = meta.get("per_as_of_date")  # labels: counts per date, "unchanged" where kept
        if per_date is not None:
            built = [d for d, c in per_date.value.items() if not c.get("unchanged")]
        else:  # features: the dates built (those left as they were are listed apart)
            built = meta["as_of_dates"].value if "as_of_dates" in meta else None
        print(f"  {key}: rebuilt {built}")
    print(f"nightly refresh: {'success' if result.success else 'FAILED'} in {wall:.1f} s wall "
          f"(target <= 180 s); load average before: {os.getloadavg()[0]:.1f}")
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
