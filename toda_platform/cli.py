"""`toda`: generate the synthetic city, run the whole platform on it, open the UIs."""

from __future__ import annotations

import datetime as dt
import os
import shlex
import sys
from pathlib import Path

import click

from toda_platform.settings import Paths


def _paths(home: str | None) -> Paths:
    paths = Paths.from_env(home)
    os.environ["TODA_HOME"] = str(paths.home)  # code locations started from here see the same home
    return paths


def _landing_is_empty(paths: Paths) -> bool:
    return not paths.landing.exists() or not any(paths.landing.rglob("*.csv"))


home_option = click.option("--home", envvar="TODA_HOME", default=None,
                           help="Root folder for everything (default: $TODA_HOME or ./.toda).")


def city_options(f):
    from synthcity import PROFILES

    def default(name: str) -> str:
        return "default: the profile's (" + ", ".join(f"{p} {getattr(c, name)}" for p, c in PROFILES.items()) + ")"

    for opt in reversed([
        click.option("--profile", type=click.Choice(list(PROFILES)), default="toda", show_default=True,
                     help="Which synthetic city: its town (schools, districts, school calendar), size and "
                          "exports (toda_platform/cities/NAME.toml, copied into the home as city.toml)."),
        click.option("--pupils", type=int, default=None, help=default("pupils")),
        click.option("--elementary-schools", type=int, default=None, help=default("elementary_schools")),
        click.option("--junior-high-schools", type=int, default=None, help=default("junior_high_schools")),
        click.option("--years", type=int, default=None, help="School years of history, ending with the latest one "
                                                             "(default 6)."),
        click.option("--latest-school-year", type=int, default=None, help="(default 2026)"),
        click.option("--today", type=click.DateTime(["%Y-%m-%d"]), default=None,
                     help="The city's 'now' (default: early November of the latest school year)."),
        click.option("--seed", type=int, default=None, help=default("seed")),
    ]):
        f = opt(f)
    return f


def _config(profile, today, **given):
    """The profile's city, with the sizes given on the command line."""
    from dataclasses import replace

    from synthcity import profile as city_profile

    chosen = {k: v for k, v in given.items() if v is not None}
    if today is not None:
        chosen["today"] = today.date() if isinstance(today, dt.datetime) else today
    return replace(city_profile(profile), **chosen)


def _exports(profile: str) -> str | None:
    """The city file to write with: the profile's when --profile was given, else the home's city
    if it has one (its city.toml or TODA_CITY), else the profile's (see synthcity.generate_city)."""
    given = click.get_current_context().get_parameter_source("profile")
    return profile if given == click.core.ParameterSource.COMMANDLINE else None


@click.group()
def main() -> None:
    """Toda education data platform."""


@main.command()
@home_option
@city_options
@click.option("--quiet", is_flag=True, help="No progress bar.")
def generate(home, quiet, **city) -> None:
    """Write the synthetic city's exports to landing/, its city file to city.toml and its hidden
    truth to truth/."""
    from synthcity import generate_city

    paths = _paths(home)
    summary = generate_city(paths.home, _config(**city), progress=not quiet, city_file=_exports(city["profile"]))
    rows = sum(summary.expected_rows.values())
    files = sum(len(v) for v in summary.files.values())
    click.echo(f"Wrote {city['profile']}'s {files} files ({rows:,} data rows) under {paths.landing} "
               f"in {summary.seconds:.0f} s; its city file is {paths.city_file}; the truth is in {paths.truth}.")


@main.command()
@home_option
@city_options
@click.option("--with-ablation", is_flag=True,
              help="Also run the source ablation (39 model fits, the longest step; else `toda ablation`).")
def demo(home, with_ablation, **city) -> None:
    """Generate the city if the landing zone is empty, then materialise every asset (the source
    ablation only with --with-ablation: it has its own job, `toda ablation`)."""
    from toda_platform.pseudonym import load_key

    paths = _paths(home)
    if _landing_is_empty(paths):
        from synthcity import generate_city

        click.echo(f"Generating the synthetic city under {paths.home} …")
        generate_city(paths.home, _config(**city), city_file=_exports(city["profile"]))
        # the generator has just written every file, completely: no copy can still be in progress,
        # so this run need not wait for them to settle (a nightly or sensor run always does)
        from toda_platform.ingest import SETTLE_ENV

        os.environ[SETTLE_ENV] = "0"
    os.environ.setdefault("TODA_DEMO", "1")  # a synthetic city: the demo key is made here
    load_key(paths.pseudonym_key_file, create=True)

    from toda_platform.definitions import materialise_all

    click.echo("Materialising every asset (one in-process run) …")
    result = materialise_all(paths, ablation=with_ablation)
    _print_summary(paths)
    if not with_ablation:
        click.echo("Source ablation: not run by the demo (39 model fits). Run it with "
                   f"{shlex.join(['.venv/bin/toda', 'ablation', '--home', str(paths.home)])} "
                   "— its schedule runs it on Saturdays at 01:00.")
    _exit_if_failed(result)


@main.command()
@home_option
def ablation(home) -> None:
    """Run the source ablation now (what the Saturday schedule runs): which sources the model
    needs, by leaving each out and by each alone."""
    from toda_platform.definitions import run_ablation

    paths = _paths(home)
    click.echo("Running the source ablation (job source_ablation_job) …")
    result = run_ablation(paths)
    _exit_if_failed(result)


@main.command()
@home_option
def refresh(home) -> None:
    """Run now exactly what the nightly schedule runs (its job, its partition range), in this
    process; waits for the warehouse while another run holds it."""
    from toda_platform.definitions import refresh as run_refresh

    paths = _paths(home)
    click.echo("Running the nightly refresh now (job nightly_refresh_job) …")
    result = run_refresh(paths)
    _print_summary(paths)
    _exit_if_failed(result)


def _exit_if_failed(result) -> None:
    if not result.success:
        failed = [e.step_key for e in result.all_events if e.is_step_failure]
        click.echo(f"The run failed at: {', '.join(failed) or 'see the Dagster UI'}", err=True)
        sys.exit(1)


def _print_summary(paths: Paths) -> None:
    from rich.table import Table

    from toda_platform.catalogue import CATALOGUE
    from toda_platform.warehouse import connect

    console = _console()
    # the settings' memory limit and threads, and a wait (said on stderr) if a run holds the file
    con = connect(paths.warehouse, read_only=True, log=lambda m: click.echo(m, err=True))
    try:
        table = Table(title="staging tables")
        for name in ("source", "rows", "files applied", "duplicates", "superseded", "quarantined", "held"):
            table.add_column(name, justify="left" if name == "source" else "right")
        counts = {
            (k, o): n for k, o, n in con.execute(
                "SELECT source_key, outcome, count(*) FROM staging.file_manifest GROUP BY ALL").fetchall()
        }
        not_exported = set(paths.city.not_exported)
        for key in CATALOGUE:
            rows, = con.execute(f"SELECT count(*) FROM staging.{key}").fetchone()
            shown = f"{key} (not exported)" if key in not_exported else key
            table.add_row(shown, f"{rows:,}", *(str(counts.get((key, o), 0))
                                              for o in ("applied", "duplicate", "superseded", "rejected", "held")))
        console.print(table)
        _print_models(console, con)
    finally:
        con.close()
    console.print(f"Warehouse: {paths.warehouse}")
    if paths.quarantine.exists() and any(paths.quarantine.rglob("*.reasons.json")):
        console.print(f"Quarantined files and their reasons: {paths.quarantine}")
    console.print("Open the Dagster UI on it:  "
                  f"[bold]{shlex.join(['.venv/bin/toda', 'ui', '--home', str(paths.home)])}[/bold]")
    console.print("Compare the models in MLflow:  "
                  f"[bold]{shlex.join(['.venv/bin/toda', 'mlflow', '--home', str(paths.home)])}[/bold]")


def _print_models(console, con) -> None:
    """The model headline, the drift gate and the published list, when they exist."""
    from rich import box
    from rich.table import Table

    from ml.dataset import table_exists as _exists

    if _exists(con, "models.status"):
        for asset, status in con.execute("SELECT asset, status FROM models.status ORDER BY asset").fetchall():
            console.print(f"[yellow]{asset}[/yellow]: {status}")
    if _exists(con, "models.headline"):
        head = con.execute("SELECT test_year, model, as_of_date, n, positives, precision_top, "
                           "precision_school, r_precision, recall_top1, recall_top2, pr_auc, roc_auc, "
                           "lead_median FROM models.headline WHERE subset = 'all' "
                           "ORDER BY test_year, model").fetchall()
        dates = ", ".join(sorted({str(r[2])[:10] for r in head}))
        # compact enough for a 100-column terminal
        table = Table(title=f"models on held-out years: each year's list of {dates}, whole cohort",
                      box=box.SIMPLE_HEAD, pad_edge=False)
        for name in ("year", "model", "pupils", "cases", "p@5%", "p@3/sch", "R-prec", "r@1%",
                     "r@2%", "PR-AUC", "AUC", "lead"):
            table.add_column(name, justify="left" if name == "model" else "right", no_wrap=True,
                             min_width=len(name) if name != "model" else 13)
        for y, m, _, n, pos, *figures, lead in head:
            table.add_row(str(y), m, f"{int(n):,}", f"{int(pos):,}",
                          *(f"{v:.3f}" if v is not None and v == v else "–" for v in figures),
                          f"{lead:.0f}" if lead is not None else "–")
        console.print(table)
        console.print("  p@5%: precision in the top 5 % of the cohort (at most cases ÷ top 5 %); "
                      "p@3/sch: in each school's top 3; R-prec: precision in the top k, k = cases; "
                      "r@1%, r@2%: share of cases in the top 1 %, 2 %; lead: median school days "
                      "before the 30th absence")
    if _exists(con, "quality.feature_drift_runs"):
        run = con.execute("SELECT summary, passed, report_path FROM quality.feature_drift_runs "
                          "ORDER BY checked_at DESC LIMIT 1").fetchone()
        if run:
            colour = "green" if run[1] else "red"
            console.print(f"Drift gate: [{colour}]{'passed' if run[1] else 'FAILED'}[/{colour}] — {run[0]}")
            if run[2]:
                console.print(f"  report: {run[2]}")
    if _exists(con, "outputs.risk_scores"):
        rows = con.execute("SELECT as_of_date, model_version, count(*), count(band) FROM outputs.risk_scores "
                           "WHERE as_of_date = (SELECT max(as_of_date) FROM outputs.risk_scores) "
                           "GROUP BY ALL").fetchall()
        for d, version, n, banded in rows:
            console.print(f"Risk list {d}: {n:,} pupils scored by futoukou_risk v{version}, "
                          f"{banded:,} in a band (outputs.risk_scores)")
    if _exists(con, "outputs.known_cases"):
        n = con.execute("SELECT count(*) FROM outputs.known_cases WHERE as_of_date = "
                        "(SELECT max(as_of_date) FROM outputs.known_cases)").fetchone()[0]
        console.print(f"Known cases listed apart (not scored): {n:,} (outputs.known_cases)")


@main.command()
@home_option
@click.option("--fail-orphaned-runs", is_flag=True,
              help="Also mark failed the runs a stopped daemon or machine left in progress (the daemon's "
                   "service runs this before it starts).")
def instance(home, fail_orphaned_runs) -> None:
    """Write the Dagster instance's config ($TODA_HOME/dagster/dagster.yaml: the run queue lets
    one warehouse writer go at a time; with TODA_DEPLOYMENT, $TODA_DEPLOYMENT/dagster/dagster.yaml:
    one writer per city, many cities at once); the services run this before they start."""
    from toda_platform.definitions import fail_orphaned_runs as fail_orphans
    from toda_platform.definitions import prepare_dagster_home, prepare_deployment_home
    from toda_platform.deployment import Deployment

    deployment = Deployment.from_env()
    if deployment:
        prepare_deployment_home(deployment)
        click.echo(f"DAGSTER_HOME={deployment.dagster_home}")
    else:
        paths = _paths(home)
        prepare_dagster_home(paths)
        click.echo(f"DAGSTER_HOME={paths.dagster_home}")
    if fail_orphaned_runs:
        import dagster as dg

        for run_id in fail_orphans(dg.DagsterInstance.get()):
            click.echo(f"run {run_id} was left in progress: marked failed")


@main.command()
@home_option
@click.option("--port", default=3000, show_default=True)
def ui(home, port) -> None:
    """Start the Dagster UI on this TODA_HOME (runs, assets, checks, sensors), or on every city
    of $TODA_DEPLOYMENT."""
    from toda_platform.definitions import prepare_dagster_home, prepare_deployment_home
    from toda_platform.deployment import Deployment

    deployment = Deployment.from_env()
    if deployment:
        prepare_deployment_home(deployment)
    else:
        prepare_dagster_home(_paths(home))
    workspace = Path(__file__).resolve().parent.parent / "workspace.yaml"
    dagster = Path(sys.executable).parent / "dagster"  # the one installed beside this Python
    os.execv(dagster, [str(dagster), "dev", "-w", str(workspace), "-p", str(port)])


def mlflow_server_command(paths: Paths, host: str, port: int, workers: int) -> tuple[list[str], dict]:
    """The MLflow server's command line and environment on this TODA_HOME's store: one worker
    (four take ~60 s and ~2.4 GB), telemetry off, artifacts under TODA_HOME."""
    from ml.tracking import quiet_environment, tracking_uri

    binary = Path(sys.executable).parent / "mlflow"
    argv = [str(binary), "server", "--backend-store-uri", tracking_uri(paths.mlflow_db),
            "--default-artifact-root", paths.mlflow_artifacts.as_uri(),
            "--host", host, "--port", str(port), "--workers", str(workers)]
    return argv, quiet_environment(dict(os.environ))


def mlflow_ui_url(paths: Paths, host: str, port: int) -> str:
    """The address that opens the model experiment in MLflow's model-training view (its
    GenAI layout hides the model registry)."""
    import sqlite3

    from ml.tracking import EXPERIMENT, UI_QUERY

    con = sqlite3.connect(f"file:{paths.mlflow_db}?mode=ro", uri=True)
    try:
        row = con.execute("SELECT experiment_id FROM experiments WHERE name = ?", [EXPERIMENT]).fetchone()
    finally:
        con.close()
    page = f"experiments/{row[0]}" if row else "experiments"
    return f"http://{host}:{port}/#/{page}?{UI_QUERY}"


@main.command()
@home_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True)
@click.option("--workers", default=1, show_default=True, help="Server worker processes.")
def mlflow(home, host, port, workers) -> None:
    """Start the MLflow UI on this TODA_HOME's tracking store (runs, ablations, registry)."""
    paths = _paths(home)
    if not paths.mlflow_db.exists():
        raise click.ClickException(f"no MLflow store at {paths.mlflow_db}: run `toda demo` first")
    argv, env = mlflow_server_command(paths, host, port, workers)
    click.echo(f"MLflow on {mlflow_ui_url(paths, host, port)} (the model-training view; Ctrl-C stops it)")
    os.execve(argv[0], argv, env)


def _portal(home) -> None:
    """Point the portal's settings at this TODA_HOME and start Django."""
    _paths(home)
    from portal.commands import setup

    setup()


@main.command()
@home_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0 for every interface).")
@click.option("--port", default=8000, show_default=True)
def portal(home, host, port) -> None:
    """Start the school portal (migrates its database on first start)."""
    _portal(home)
    from portal.commands import migrate, serve

    migrate()
    click.echo(f"School portal on http://{host}:{port}/ (Ctrl-C stops it)")
    serve(host=host, port=port)


@main.group()
def users() -> None:
    """Portal users and their roles (roles are configured in portal/roles.toml)."""


@users.command("add")
@home_option
@click.argument("username")
@click.option("--role", required=True, help="A role of portal/roles.toml, e.g. principal.")
@click.option("--school", default="", help="School code (roles scoped to one school).")
@click.option("--agency", default="", help="Agency code (case_team), e.g. school_counsellor.")
@click.option("--password-stdin", is_flag=True, required=True, help="Read the password from standard input.")
def users_add(home, username, role, school, agency, password_stdin) -> None:
    """Create a user, or change an existing user's role and password."""
    _portal(home)
    from portal.commands import add_user, migrate

    migrate()
    password = sys.stdin.readline().rstrip("\r\n")
    try:
        add_user(username, role, password, school=school, agency=agency)
    except ValueError as e:
        raise click.ClickException(str(e))
    click.echo(f"user {username}: role {role}{' school ' + school if school else ''}"
               f"{' agency ' + agency if agency else ''}")


@users.command("list")
@home_option
def users_list(home) -> None:
    """List the portal's users with role, school or agency, and last login."""
    _portal(home)
    from portal.commands import list_users, migrate

    migrate()
    for name, role, school, agency, active, last in list_users():
        click.echo(f"{name:20} {role or '-':15} {school or agency or '-':15} "
                   f"{'active' if active else 'inactive':9} last login {last or 'never'}")


@main.group()
def audit() -> None:
    """The portal's audit log."""


@audit.command("verify")
@home_option
def audit_verify(home) -> None:
    """Check the audit log's hash chain; exits 1 naming the first bad entry."""
    _portal(home)
    from portal.audit import verify
    from portal.commands import migrate

    migrate()
    verdict = verify()
    click.echo(verdict.message())
    if not verdict.ok:
        sys.exit(1)


@audit.command("who")
@home_option
@click.option("--pupil-id", default=None, help="The pupil's 仮名ID (pseudonym).")
@click.option("--student-number", default=None, help="The pupil's 学籍番号 (pseudonymised here with the key).")
def audit_who(home, pupil_id, student_number) -> None:
    """Who looked at one pupil: the audit entries naming them (none once the pupil is erased).
    The question is itself audited."""
    import getpass

    if bool(pupil_id) == bool(student_number):
        raise click.UsageError("give one of --pupil-id or --student-number")
    paths = _paths(home)
    _portal(home)
    from portal.audit import about, record
    from portal.commands import migrate

    migrate()
    if student_number:
        from toda_platform.pseudonym import load_key, pseudonymise

        pupil_id = pseudonymise(load_key(paths.pseudonym_key_file), student_number)
    entries = list(about(pupil_id))
    for e in entries:
        click.echo(f"#{e.seq} {e.at:%Y-%m-%d %H:%M} {e.username} {e.role or '-'} {e.action} "
                   f"{e.school_code or '-'} {e.outcome}")
    click.echo(f"{len(entries)} entries name this pupil")
    record("audit_search", username=f"cli:{getpass.getuser()}", pupil_ids=[pupil_id],
           detail=f"toda audit who: {len(entries)} entries")


@main.group(invoke_without_command=True)
@home_option
@click.pass_context
def alerts(ctx, home) -> None:
    """Open alerts of failed runs (ops.alerts); `toda alerts close ID --note ...` closes one."""
    if ctx.invoked_subcommand is not None:
        return
    from toda_platform.alerts import listed

    found = listed(_paths(home))
    for a in found:
        click.echo(f"#{a['id']} {a['raised_at_jst']} {a['job_name']} run {a['run_id'][:8]} "
                   f"{a['assets'] or '-'} {a['failed_check'] or ''} {a['error']}: {a['message']}")
    click.echo(f"{len(found)} open alert(s)")


@alerts.command("close")
@home_option
@click.argument("alert_id", type=int)
@click.option("--note", required=True, help="What was done about it (recorded).")
def alerts_close(home, alert_id, note) -> None:
    """Close an open alert with a note."""
    import getpass

    from toda_platform.alerts import close

    if not close(_paths(home), alert_id, getpass.getuser(), note):
        raise click.ClickException(f"no open alert #{alert_id}")
    click.echo(f"alert #{alert_id} closed")


@main.command()
@home_option
@click.argument("source")
@click.option("--all", "everything", is_flag=True, help="Every file, not only the 20 most recent.")
def files(home, source, everything) -> None:
    """What happened to each file landed for SOURCE (from the manifest)."""
    from rich.table import Table

    from toda_platform.warehouse import connect

    paths = _paths(home)
    con = connect(paths.warehouse, read_only=True, log=lambda m: click.echo(m, err=True))
    try:
        rows = con.execute(
            "SELECT file_name, outcome, period, rows_kept, coalesce(message, '') FROM staging.file_manifest "
            "WHERE source_key = ? ORDER BY processed_at DESC" + ("" if everything else " LIMIT 20"),
            [source]).fetchall()
    finally:
        con.close()
    table = Table(title=f"files of {source}, newest first")
    for name in ("file", "outcome", "period", "rows", "message"):
        table.add_column(name, overflow="fold")
    for name, outcome, period, kept, message in rows:
        table.add_row(name, outcome, period or "", f"{kept:,}" if kept is not None else "", message[:300])
    _console().print(table)


@main.command()
@home_option
@click.argument("source")
@click.argument("file_name")
@click.option("--note", default="", help="Why this older file is the right one (recorded).")
def release(home, source, file_name, note) -> None:
    """Apply a held file after all: SOURCE FILE_NAME goes back to landing and the next run applies it
    whatever the order of exports."""
    from toda_platform.catalogue import CATALOGUE
    from toda_platform.ingest import release as release_file
    from toda_platform.warehouse import connect

    paths = _paths(home)
    if source not in CATALOGUE:
        raise click.BadParameter(f"no source '{source}'; one of: {', '.join(CATALOGUE)}")
    con = connect(paths.warehouse, log=click.echo)
    try:
        target = release_file(con, paths.city.spec(source), paths, file_name, note)
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    finally:
        con.close()
    click.echo(f"{file_name} is back in {target.parent}: the next run of staging/{source} applies it.")


# ---------------------------------------------------------------------------------------------
# Governance (issue 14): what families are told, the register, retention, erasure
# ---------------------------------------------------------------------------------------------

def _documents_dir(paths: Paths, out: str | None) -> Path:
    return Path(out) if out else paths.home / "governance"


@main.command()
@home_option
@click.option("--out", default=None, help="Folder to write to (default: $TODA_HOME/governance).")
@click.option("--pdf", is_flag=True, help="Also print it to notice.pdf with the local Chromium.")
def notice(home, out, pdf) -> None:
    """The notice to pupils and parents (お知らせ), from the catalogue: a printable HTML page."""
    from toda_platform.governance.documents import print_pdf, write_documents

    paths = _paths(home)
    for p in write_documents(_documents_dir(paths, out), register=False, city=paths.city):
        click.echo(f"wrote {p} (A4 print styles included)")
        if pdf:
            try:
                click.echo(f"wrote {print_pdf(p, p.with_suffix('.pdf'))}")
            except (FileNotFoundError, RuntimeError) as e:
                raise click.ClickException(str(e)) from e


@main.command()
@home_option
@click.option("--out", default=None, help="Folder to write to (default: $TODA_HOME/governance).")
def register(home, out) -> None:
    """The register of personal-information files (個人情報ファイル簿), HTML and CSV."""
    from toda_platform.governance.documents import write_documents

    paths = _paths(home)
    for p in write_documents(_documents_dir(paths, out), notice=False, city=paths.city):
        click.echo(f"wrote {p}")


@main.command()
@home_option
@click.option("--dry-run", is_flag=True, help="Only say what would go.")
@click.option("--today", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="The date retention counts back from (default: today, Asia/Tokyo).")
def retention(home, dry_run, today) -> None:
    """Drop rows and archived files older than each source's retention period (catalogue)."""
    from toda_platform.governance import retention as R

    paths = _paths(home)
    try:
        plan = R.run(paths, today.date() if today else None, dry_run=dry_run, log=click.echo)
    except FileNotFoundError as e:
        raise click.ClickException(str(e)) from e
    verb = "would go" if dry_run else "removed"
    for line in plan.lines():
        click.echo(f"{verb}: {line}")
    click.echo(R.summary(plan, dry_run=dry_run))


@main.command()
@home_option
@click.option("--student-number", required=True, help="The pupil's 学籍番号.")
@click.option("--reason", required=True, help="Why (recorded; must not name the pupil).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def erase(home, student_number, reason, yes) -> None:
    """Erase one pupil from everything under the home and keep them out of every rebuild."""
    from toda_platform.governance.erasure import ErasureError, compact
    from toda_platform.governance.erasure import erase as erase_pupil
    from toda_platform.pseudonym import load_key
    from toda_platform.warehouse import connect

    paths = _paths(home)
    if not yes:
        click.confirm("This cannot be undone. Erase this pupil everywhere?", abort=True)
    con = connect(paths.warehouse, log=click.echo)
    try:
        report = erase_pupil(con, paths, load_key(paths.pseudonym_key_file), student_number, reason)
    except ErasureError as e:
        raise click.ClickException(str(e)) from e
    finally:
        con.close()
    compact(paths.warehouse)  # deleted rows must not linger in the file's free blocks
    click.echo(f"erasure {report.erasure_id}: {report.rows_removed:,} rows in {len(report.rows)} tables, "
               f"{report.files_rewritten} department files rewritten, {report.snapshots_rewritten} serving "
               f"snapshots, {report.identity_rows} identity records, {report.portal_rows} portal entries, "
               f"{report.audit_subjects} audit subject secrets shredded, {len(report.scrubbed)} other files "
               f"cleaned; recorded in governance.erasure_log")


@main.group()
def sources() -> None:
    """The sources a city exports."""


@sources.command("profile")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", default=None, help="The source it is, if known (else the best match is proposed).")
@click.option("--draft", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the draft city-file section here (default: print it).")
def sources_profile(file, source, draft) -> None:
    """Read an unknown export and propose which source it is, its header mapping and a draft
    city-file section for a person to confirm. Shows shapes of values, never personal values."""
    from toda_platform.profiler import draft_section, profile_export, report_lines

    try:
        proposal = profile_export(file.read_bytes(), file.name, source=source)
    except KeyError as e:
        raise click.BadParameter(str(e.args[0]), param_hint="--source") from None
    click.echo("\n".join(report_lines(proposal)))
    text = draft_section(proposal)
    if draft is None:
        click.echo("\n" + text, nl=False)
    else:
        draft.write_text(text, encoding="utf-8")
        click.echo(f"draft city-file section written to {draft}")


@main.group()
def keys() -> None:
    """The pseudonym key."""


@keys.command("rotate")
@home_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--accept-legacy-erasures", is_flag=True,
              help="Rotate even though erasures from before number tokens would stop matching.")
def keys_rotate(home, yes, accept_legacy_erasures) -> None:
    """Re-pseudonymise everything under a new key (warehouse, identity store, snapshots, files)
    and retire the old key."""
    from toda_platform.governance.erasure import compact
    from toda_platform.governance.keys import KeyRotationError, rotate
    from toda_platform.warehouse import connect

    paths = _paths(home)
    if not yes:
        click.confirm("Every pseudonym changes and the old key is deleted. Rotate?", abort=True)
    con = connect(paths.warehouse, log=click.echo)
    try:
        report = rotate(con, paths, accept_legacy_erasures=accept_legacy_erasures)
    except KeyRotationError as e:
        raise click.ClickException(str(e)) from e
    finally:
        con.close()
    compact(paths.warehouse)  # old pseudonyms must not linger in free blocks
    click.echo(f"key {report.old_fingerprint} retired, now {report.new_fingerprint}: {report.pseudonyms:,} "
               f"pseudonyms, {sum(report.rows.values()):,} rows re-keyed, {report.files_rewritten} files, "
               f"{report.snapshots_rewritten} snapshots, {report.identity_rows} identity records, "
               f"{report.audit_subjects} audit subjects re-pointed ({report.audit_shredded} shredded: no number "
               f"left); recorded in governance.key_log")
    if report.legacy_erasures:
        click.echo(f"warning: {report.legacy_erasures} erasures from before number tokens no longer match "
                   f"re-sent files (accepted)")


def _console():
    """A terminal's own width; piped (``make demo | tee``, CI logs) rich would assume 80 columns and
    cut the figures to "0.2…": wide enough for the summary's tables instead."""
    import os
    import sys

    from rich.console import Console

    return Console() if sys.stdout.isatty() or os.environ.get("COLUMNS") else Console(width=160)


if __name__ == "__main__":
    main()


# ---------------------------------------------------------------------------------------------
# Many cities, one deployment (issue 13): $TODA_DEPLOYMENT/cities/<name>/ is each city's home
# ---------------------------------------------------------------------------------------------

deployment_option = click.option("--deployment", "root", envvar="TODA_DEPLOYMENT", required=True,
                                 help="The deployment root (default: $TODA_DEPLOYMENT).")


def _deployment(root: str):
    from toda_platform.deployment import DEPLOYMENT_ENV, Deployment

    deployment = Deployment.from_env(root)
    os.environ[DEPLOYMENT_ENV] = str(deployment.root)  # code locations started from here see it
    return deployment


@main.group()
def deployment() -> None:
    """Many cities in one deployment: one home per city, one Dagster code location for all."""


@deployment.command("add-city")
@deployment_option
@click.argument("name")
@click.option("--city-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The city's file to copy into its home as city.toml.")
def deployment_add_city(root, name, city_file) -> None:
    """Make the home of city NAME under the deployment (cities/NAME/city.toml)."""
    from toda_platform.deployment import DeploymentError

    try:
        paths = _deployment(root).add_city(name, city_file)
    except DeploymentError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"city {name}: {paths.home} (generate or land its files there; TODA_HOME={paths.home} "
               "for single-city commands)")


@deployment.command("list")
@deployment_option
def deployment_list(root) -> None:
    """The deployment's cities and whether each has a warehouse yet."""
    d = _deployment(root)
    for name in d.cities():
        p = d.paths(name)
        click.echo(f"{name}\t{p.home}\t{'warehouse' if p.warehouse.exists() else 'no warehouse yet'}")


@deployment.command("instance")
@deployment_option
@click.option("--max-concurrent-runs", type=int, default=None,
              help="Runs at once over all cities (default: $TODA_MAX_CONCURRENT_RUNS or one per city).")
@click.option("--k8s-image", default=None,
              help="Launch each run as a Kubernetes Job of this image (dagster-k8s's K8sRunLauncher).")
def deployment_instance(root, max_concurrent_runs, k8s_image) -> None:
    """Write the deployment's Dagster instance ($TODA_DEPLOYMENT/dagster/dagster.yaml)."""
    from toda_platform.definitions import k8s_run_launcher, prepare_deployment_home

    d = _deployment(root)
    launcher = k8s_run_launcher(d, k8s_image) if k8s_image else None
    prepare_deployment_home(d, max_concurrent_runs=max_concurrent_runs, run_launcher=launcher)
    click.echo(f"DAGSTER_HOME={d.dagster_home}")


@deployment.command("refresh")
@deployment_option
@click.argument("city")
def deployment_refresh(root, city) -> None:
    """Run CITY's nightly job now, in this process (another city may run beside it)."""
    from toda_platform.definitions import refresh_city
    from toda_platform.deployment import DeploymentError

    d = _deployment(root)
    try:
        result = refresh_city(d, city)
    except DeploymentError as e:
        raise click.ClickException(str(e)) from e
    _exit_if_failed(result)


@deployment.command("prefecture")
@deployment_option
@click.option("--out", default=None, help="Folder to write to (default: $TODA_DEPLOYMENT/prefecture).")
def deployment_prefecture(root, out) -> None:
    """The prefecture's cross-city tables (school and city aggregates, small cells suppressed)."""
    from toda_platform.prefecture import build_prefecture

    d = _deployment(root)
    try:
        tables = build_prefecture(d, Path(out) if out else None)
    except LookupError as e:
        raise click.ClickException(str(e)) from e
    target = Path(out) if out else d.prefecture
    for name, frame in tables.items():
        click.echo(f"wrote {target / (name + '.csv')} ({len(frame):,} rows)")
