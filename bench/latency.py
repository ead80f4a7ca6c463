"""From files landing to the new published list, under the Dagster daemon.

    .venv/bin/python bench/latency.py --source S --home H [--next-day D] [--quiet SECONDS]

Copies the materialised city home ``S`` to ``H`` (``cp -a``; ``S`` is never written; an existing
``H`` is used as it is with ``--reuse``), starts ``dagster-daemon run`` on it (as the
``toda-dagster-daemon`` service does: ``toda instance --fail-orphaned-runs`` first; the portal's
database migrated as its service does), waits until
the landing sensor has ticked and no run is queued or running, then lands one new school day's
files (``bench/nightly.py``: every file of the city generated one day on, ``D``, whose bytes
differ) and polls the instance until a rescoring run started by ``rescore_after_landing`` has
published a snapshot. It prints the timeline — each run the daemon started (job, why, queued,
start, end), each snapshot published (by which run, its as-of date) — the seconds from the
landing to the new list, and the CPU seconds of the daemon and everything it started (sampled
from /proc every second) beside the wall time and the load average.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu(root: int, seen: dict, commands: dict | None = None) -> None:
    """Record the CPU seconds (user + system) of ``root`` and its descendants in ``seen``
    (keyed by pid and start time, the last value read: a process that ended keeps its last),
    and in ``commands`` each one's command line (a run's process names its run id)."""
    parents, stats = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        parents[int(entry)] = int(fields[1])
        stats[int(entry)] = (fields[19], (int(fields[11]) + int(fields[12])) / TICKS)
    tree, grew = {root}, True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    for pid in tree & stats.keys():
        start, cpu = stats[pid]
        seen[(pid, start)] = cpu
        if commands is not None and (pid, start) not in commands:
            try:
                commands[(pid, start)] = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                commands[(pid, start)] = ""


def stamp(t: float | None, t0: float) -> str:
    return "      -" if t is None else f"{t - t0:7.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, help="a materialised city home to copy (read only)")
    ap.add_argument("--home", required=True, type=Path, help="where the copy goes (the daemon's TODA_HOME)")
    ap.add_argument("--reuse", action="store_true", help="use --home as it is")
    ap.add_argument("--next-day", type=Path, help="the city generated one day on (made if missing)")
    ap.add_argument("--today", help="the next day's 'today' (default: the home's today + 1 day)")
    ap.add_argument("--quiet", type=float, help="TODA_RESCORE_QUIET_SECONDS for the daemon (default 180)")
    ap.add_argument("--settle", type=float, help="TODA_SETTLE_SECONDS for the daemon (default 30)")
    ap.add_argument("--timeout", type=float, default=2400.0)
    args = ap.parse_args()
    home = args.home.resolve()
    if args.source and not args.reuse:
        if home.exists():
            sys.exit(f"{home} exists (pass --reuse to use it as it is)")
        subprocess.run(["cp", "-a", str(args.source.resolve()), str(home)], check=True)
    env = {**os.environ, "TODA_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    for name, value in (("TODA_RESCORE_QUIET_SECONDS", args.quiet), ("TODA_SETTLE_SECONDS", args.settle)):
        if value is not None:
            env[name] = str(value)
    os.environ.update({"TODA_HOME": env["TODA_HOME"], "DAGSTER_HOME": env["DAGSTER_HOME"]})
    from nightly import land_changed, next_day_city

    next_day = next_day_city(home, (args.next_day or home.parent / "next_day").resolve(), args.today)
    bin_dir = Path(sys.executable).parent
    subprocess.run([str(bin_dir / "toda"), "instance", "--home", str(home), "--fail-orphaned-runs"],
                   check=True, env=env, cwd=ROOT)
    # the portal's service migrates its database when it starts (the ops asset reads its audit log):
    # a home copied from before a migration would fail that asset's half-hourly run
    subprocess.run([str(bin_dir / "toda"), "users", "list", "--home", str(home)], check=True, env=env,
                   cwd=ROOT, stdout=subprocess.DEVNULL)

    import dagster as dg

    from assets.models import RISK_SCORES_KEY
    from assets.sensors import AFTER_LANDING_TAG, LANDING_TAG
    from assets.serving import SNAPSHOT_KEY

    instance = dg.DagsterInstance.get()
    started = time.time()
    log = open(home / "daemon.log", "w")
    daemon = subprocess.Popen([str(bin_dir / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")],
                              env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    cpu: dict = {}
    commands: dict = {}
    active = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
              dg.DagsterRunStatus.STARTED]

    def landing_cursor() -> bool:
        return any(s.instigator_name == "landing_zone_sensor" and s.instigator_data
                   and getattr(s.instigator_data, "cursor", None) for s in instance.all_instigator_state())

    try:
        # the daemon up, the landing sensor's first tick done, the queue empty for 30 s
        idle_since = None
        while True:
            tree_cpu(daemon.pid, cpu)
            if daemon.poll() is not None:
                sys.exit(f"the daemon stopped: see {home / 'daemon.log'}")
            busy = instance.get_runs(filters=dg.RunsFilter(statuses=active))
            idle_since = None if busy else (idle_since or time.time())
            if landing_cursor() and idle_since and time.time() - idle_since > 30:
                break
            if time.time() - started > args.timeout:
                sys.exit("the daemon did not settle")
            time.sleep(2)
        before = {r.run_id for r in instance.get_runs()}
        ready = time.time()
        cpu_ready = sum(cpu.values())
        load_before = os.getloadavg()
        t0 = time.time()
        landed = land_changed(home, next_day)
        t_landed = time.time()
        print(f"daemon ready after {ready - started:.0f} s ({cpu_ready:.1f} s CPU); landed {len(landed)} files "
              f"in {t_landed - t0:.2f} s at {dt.datetime.fromtimestamp(t0):%H:%M:%S}: {', '.join(landed)}")
        done_at = None
        while time.time() - t0 < args.timeout:
            tree_cpu(daemon.pid, cpu, commands)
            records = [r for r in instance.get_run_records() if r.dagster_run.run_id not in before]
            rescoring = [r for r in records if r.dagster_run.tags.get(AFTER_LANDING_TAG)]
            if rescoring and all(r.dagster_run.status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE,
                                                          dg.DagsterRunStatus.CANCELED) for r in records):
                done_at = time.time()
                break
            time.sleep(1)
        wall = time.time() - t0
        cpu_total = sum(cpu.values()) - cpu_ready
        load_after = os.getloadavg()
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
        log.close()

    from nightly import step_seconds

    print(f"\n{'run':<28} {'why':<34} {'status':<8} {'queued':>7} {'start':>7} {'end':>7} {'CPU':>6}"
          f"   (s after landing; CPU s of the run's process)")
    for r in sorted(records, key=lambda r: r.create_timestamp.timestamp()):
        run = r.dagster_run
        why = (f"landing: {run.tags[LANDING_TAG]}" if LANDING_TAG in run.tags else
               f"after landing: {run.tags[AFTER_LANDING_TAG]}" if AFTER_LANDING_TAG in run.tags else
               run.tags.get("dagster/sensor_name") or run.tags.get("dagster/schedule_name") or "")
        pids = {e.dagster_event.pid for e in instance.all_logs(run.run_id) if e.dagster_event}
        run_cpu = sum(c for (pid, start), c in cpu.items()
                      if pid in pids or run.run_id in commands.get((pid, start), ""))
        print(f"{run.job_name[:28]:<28} {why[:34]:<34} {run.status.value[:8]:<8} "
              f"{stamp(r.create_timestamp.timestamp(), t0)} {stamp(r.start_time, t0)} {stamp(r.end_time, t0)} "
              f"{run_cpu:6.1f}")
        steps = sorted(step_seconds(r.dagster_run).items(), key=lambda kv: -kv[1])[:5]
        print("    " + ", ".join(f"{k} {v:.1f} s" for k, v in steps))
    ids = {r.dagster_run.run_id: r for r in records}
    print()
    for key in (RISK_SCORES_KEY, SNAPSHOT_KEY):
        for m in instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, after_timestamp=t0),
                                                 limit=20).records:
            meta = m.asset_materialization.metadata
            as_of = meta.get("as_of_date")
            job = ids[m.run_id].dagster_run.job_name if m.run_id in ids else m.run_id
            print(f"{key.to_user_string():<22} at {m.timestamp - t0:7.1f} s by {job} "
                  f"(as of {getattr(as_of, 'value', as_of)})")
    published = [m for m in instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=SNAPSHOT_KEY, after_timestamp=t0), limit=20).records
        if m.run_id in ids and ids[m.run_id].dagster_run.tags.get(AFTER_LANDING_TAG)]
    current = os.readlink(home / "serving" / "current")
    if not published or done_at is None:
        print(f"no new list within {args.timeout:.0f} s (serving/current -> {current})")
        return 1
    latency = published[-1].timestamp - t0
    print(f"\nlanding -> new published list: {latency:.1f} s ({latency / 60:.1f} min); serving/current -> {current}")
    print(f"wall {wall:.1f} s from the landing to the last run's end; CPU {cpu_total:.1f} s (the daemon and "
          f"every process it started, user+sys); load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after (1 min), {load_after[1]:.2f} (5 min); quiet "
          f"{env.get('TODA_RESCORE_QUIET_SECONDS', '180 (default)')} s, settle "
          f"{env.get('TODA_SETTLE_SECONDS', '30 (default)')} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
