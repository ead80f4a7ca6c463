"""How fast is the attendance_daily staging asset compared with DuckDB reading the same files bare?

    .venv/bin/python bench/ingest.py [--home .toda] [--pupils 12000]

Uses the landing files of an existing city under --home (generating the default city there if
its landing zone is empty), copies attendance_daily's files into a fresh temporary TODA_HOME, and
in one run measures: (a) materialising the real ``staging/attendance_daily`` asset (encoding
detection, header mapping, parsing, pseudonymisation, manifest, archive) and (b) a bare
``CREATE TABLE AS SELECT * FROM read_csv([...])`` of the same files into a fresh DuckDB file.
Prints rows/s of each and their ratio (target ≥ 0.5), with the CPU seconds (user + system) of
each and the load average: on a shared machine wall times say more about the neighbours.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SOURCE = "attendance_daily"


def cpu_seconds() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", default=os.environ.get("TODA_HOME", ".toda"))
    parser.add_argument("--pupils", type=int, default=None, help="generate a city of this size if needed")
    args = parser.parse_args()

    import dagster as dg
    import duckdb

    from assets.sources import staging_assets, staging_key
    from resources.toda import build_resources
    from toda_platform.settings import Paths

    source_paths = Paths.from_env(args.home)
    files = sorted(source_paths.landing_dir(SOURCE).glob("*.csv"))
    if not files:
        from synthcity import CityConfig, generate_city

        config = CityConfig() if args.pupils is None else CityConfig(pupils=args.pupils)
        print(f"generating a city ({config.pupils} pupils) under {source_paths.home} …")
        generate_city(source_paths.home, config)
        files = sorted(source_paths.landing_dir(SOURCE).glob("*.csv"))

    with tempfile.TemporaryDirectory(dir=source_paths.home) as tmp:
        paths = Paths.from_env(Path(tmp) / "home")
        landing = paths.landing_dir(SOURCE)
        landing.mkdir(parents=True)
        for f in files:
            shutil.copy2(f, landing / f.name)
        os.environ.setdefault("TODA_PSEUDONYM_KEY", "bench-key-" + "0" * 32)  # a throwaway key of full length
        os.environ["TODA_SETTLE_SECONDS"] = "0"  # copied in whole just now: nothing to wait for
        size_mb = sum(f.stat().st_size for f in files) / 1e6

        asset = next(a for a in staging_assets if a.key == staging_key(SOURCE))
        load_before = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), cpu_seconds()
        result = dg.materialize([asset], resources=build_resources(paths))
        asset_s, asset_cpu = time.perf_counter() - t0, cpu_seconds() - c0
        assert result.success
        con = duckdb.connect(str(paths.warehouse), read_only=True)
        asset_rows, = con.execute(f"SELECT count(*) FROM staging.{SOURCE}").fetchone()
        con.close()

        bare_db = Path(tmp) / "bare.duckdb"
        con = duckdb.connect(str(bare_db))
        listing = "[" + ", ".join(f"'{f}'" for f in files) + "]"
        t0, c0 = time.perf_counter(), cpu_seconds()
        con.execute(f"CREATE TABLE t AS SELECT * FROM read_csv({listing}, header = true)")
        bare_s, bare_cpu = time.perf_counter() - t0, cpu_seconds() - c0
        load_after = os.getloadavg()[0]
        bare_rows, = con.execute("SELECT count(*) FROM t").fetchone()
        con.close()

    asset_rate, bare_rate = asset_rows / asset_s, bare_rows / bare_s
    print(f"{SOURCE}: {len(files)} files, {size_mb:,.0f} MB")
    print(f"  staging asset : {asset_rows:>12,} rows in {asset_s:6.1f} s = {asset_rate:>12,.0f} rows/s"
          f"   ({asset_cpu:6.1f} s CPU)")
    print(f"  bare read_csv : {bare_rows:>12,} rows in {bare_s:6.1f} s = {bare_rate:>12,.0f} rows/s"
          f"   ({bare_cpu:6.1f} s CPU)")
    print(f"  ratio (asset / bare) = {asset_rate / bare_rate:.2f}   (target >= 0.5); by CPU seconds "
          f"{(asset_rows / asset_cpu) / (bare_rows / bare_cpu):.2f}")
    print(f"  load average (1 min) {load_before:.1f} before, {load_after:.1f} after")


if __name__ == "__main__":
    main()
