"""How fast is the attendance_daily staging asset compared with DuckDB reading the same files bare?

    .venv/bin/python bench/ingest.py [--home .toda] [--pupils 12000]

Uses the landing files of an existing city under --home (generating the default city there if
its landing zone is empty), copies attendance_daily's files into a fresh temporary TODA_HOME, and
in one run measures: (a) materialising the real ``staging/attendance_daily`` asset (encoding
detection, header mapping, parsing, pseudonymisation, manifest, archive) and (b) a bare
``CREATE TABLE AS SELECT * FROM read_csv([...])`` of the same files into a fresh DuckDB file.
Prints rows/s of each and their ratio (target ≥ 0.5), with the CPU seconds (user + system) of
each and the load average: on a shared machine wall times say more about the neighbours.

``--floor`` also times, on the same files, the least any design of the staging step could do in
DuckDB — no checks, no Great Expectations, no manifest, hashing or archive, no Dagster — and
prints its ratio: (a) the present design's two unavoidable statements (the strict all-text read
into a table that keeps the file's order, whose row ids give the line numbers the messages
quote, then the typed INSERT through the value maps) and (b) a design that gives up stored line
numbers (one aggregate pass over the CSV for the maps, one typed INSERT straight from the CSV,
the maps forced to the hash join's build side). The maps are stand-ins computed in SQL on the
distinct values (the asset computes them in Python; their cost is the same few milliseconds).
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


def floor(files: list[Path], db: Path) -> list[tuple[str, float, float, int]]:
    """(label, wall s, CPU s, rows) of the bare read and of the two least designs (see --floor)."""
    import duckdb

    con = duckdb.connect(str(db))
    listing = "[" + ", ".join(f"'{f}'" for f in files) + "]"
    with open(files[0], encoding="utf-8-sig") as fh:
        n = len(fh.readline().rstrip("\r\n").split(","))
    cols = ", ".join(f"'c{i}': 'VARCHAR'" for i in range(n))
    strict = (f"read_csv({listing}, header = false, skip = 1, delim = ',', quote = '\"', escape = '\"', "
              f"auto_detect = false, strict_mode = true, null_padding = false, all_varchar = true, "
              f"columns = {{{cols}}})")
    typed = ", ".join(f"m{i}.value AS v{i}" for i in range(n))
    sha = "'" + "0" * 64 + "' || _file::VARCHAR"

    def maps(source: str) -> str:
        """A map per column: raw text -> a typed value (a date, a 16-hex pseudonym, a code); the joins."""
        for i in range(n):
            value = {0: "try_strptime(raw, '%Y/%m/%d')::DATE", 2: "md5(raw)[:16]"}.get(i, "upper(raw)")
            con.execute(f"CREATE OR REPLACE TEMP TABLE m{i} AS SELECT raw, {value} AS value "
                        f"FROM (SELECT DISTINCT c{i} AS raw FROM {source} WHERE c{i} IS NOT NULL)")
        return " ".join(f"LEFT JOIN m{i} ON r.c{i} = m{i}.raw" for i in range(n))

    def bare() -> str:
        con.execute(f"CREATE TABLE bare AS SELECT * FROM read_csv({listing}, header = true)")
        return "bare"

    def raw_table_then_insert() -> str:
        con.execute(f"CREATE TABLE raw AS SELECT *, file_index::USMALLINT AS _file FROM {strict}")
        joins = maps("raw")
        con.execute(f"INSERT INTO st SELECT {typed}, {sha}, (r.rowid - f.first + 2)::INTEGER FROM raw r "
                    f"JOIN (SELECT _file AS ff, min(rowid) AS first FROM raw GROUP BY 1) f ON r._file = f.ff {joins}")
        return "st"

    def aggregate_then_insert_from_csv() -> str:
        con.execute(f"CREATE OR REPLACE TEMP TABLE agg AS SELECT {', '.join(f'c{i}' for i in range(n))}, "
                    f"count(*) AS n FROM {strict} "
                    f"GROUP BY GROUPING SETS ({', '.join(f'(file_index, c{i})' for i in range(n))})")
        joins = maps("agg")
        # DuckDB has no size estimate for read_csv and would build the hash table on the CSV's rows
        con.execute("SET disabled_optimizers = 'build_side_probe_side'")
        con.execute(f"INSERT INTO st SELECT {typed}, {sha.replace('_file', 'file_index')}, NULL FROM {strict} r {joins}")
        con.execute("RESET disabled_optimizers")
        return "st"

    out = []
    for label, design in (("bare", bare),
                          ("(a) raw table + typed INSERT, line numbers", raw_table_then_insert),
                          ("(b) aggregate pass + INSERT from the CSV, no lines", aggregate_then_insert_from_csv)):
        con.execute("DROP TABLE IF EXISTS raw")
        con.execute("CREATE OR REPLACE TABLE st (" + ", ".join(f"v{i} VARCHAR" for i in range(n))
                    + ", _file_sha256 VARCHAR, _line INTEGER)")
        con.execute("CHECKPOINT")
        t0, c0 = time.perf_counter(), cpu_seconds()
        table = design()
        con.execute("CHECKPOINT")
        rows, = con.execute(f"SELECT count(*) FROM {table}").fetchone()
        out.append((label, time.perf_counter() - t0, cpu_seconds() - c0, rows))
    con.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", default=os.environ.get("TODA_HOME", ".toda"))
    parser.add_argument("--pupils", type=int, default=None, help="generate a city of this size if needed")
    parser.add_argument("--floor", action="store_true",
                        help="also time the least any staging design could do (see the docstring)")
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
        floors = floor(files, Path(tmp) / "floor.duckdb") if args.floor else []

    asset_rate, bare_rate = asset_rows / asset_s, bare_rows / bare_s
    print(f"{SOURCE}: {len(files)} files, {size_mb:,.0f} MB")
    print(f"  staging asset : {asset_rows:>12,} rows in {asset_s:6.1f} s = {asset_rate:>12,.0f} rows/s"
          f"   ({asset_cpu:6.1f} s CPU)")
    print(f"  bare read_csv : {bare_rows:>12,} rows in {bare_s:6.1f} s = {bare_rate:>12,.0f} rows/s"
          f"   ({bare_cpu:6.1f} s CPU)")
    print(f"  ratio (asset / bare) = {asset_rate / bare_rate:.2f}   (target >= 0.5); by CPU seconds "
          f"{(asset_rows / asset_cpu) / (bare_rows / bare_cpu):.2f}")
    print(f"  load average (1 min) {load_before:.1f} before, {load_after:.1f} after")
    if floors:
        (_, b_s, b_cpu, b_rows), rest = floors[0], floors[1:]
        print(f"  the least a design could do (same files, bare read again: {b_s:.1f} s, {b_cpu:.1f} s CPU):")
        for label, s, c, rows in rest:
            print(f"    {label:52s} {s:6.1f} s ({c:5.1f} s CPU): ratio {(rows / s) / (b_rows / b_s):.2f}, "
                  f"by CPU {(rows / c) / (b_rows / b_cpu):.2f}")
        print(f"  load average (1 min) {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
