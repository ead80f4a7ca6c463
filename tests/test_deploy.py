"""The systemd units shipped in deploy/ start commands that exist in the virtualenv, with options
those commands accept, restart after a crash and start at boot."""

from __future__ import annotations

import configparser
import shlex
import subprocess
from pathlib import Path

import pytest

from toda_platform.warehouse import MEMORY_ENV, engine_config

ROOT = Path(__file__).resolve().parents[1]
UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))
INSTALL_ROOT = "/opt/toda"  # where the units expect the checkout (README: production operation)


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read(path, encoding="utf-8")
    return parser


def _local(arg: str) -> str:
    return arg.replace(INSTALL_ROOT, str(ROOT)) if arg.startswith(INSTALL_ROOT) else arg


# a template unit's instance name (%i) and the variables its commands take from its environment files
TEMPLATE_VALUES = {"%i": "toda", "${TODA_DEPLOYMENT}": "/srv/toda", "${TODA_PORTAL_PORT}": "8001"}


def _environment_files(path: Path) -> list[str]:
    """Every EnvironmentFile= line (a unit may have several; configparser keeps the last)."""
    return [line.split("=", 1)[1].strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.startswith("EnvironmentFile=")]


def test_the_three_services_and_the_deployments_portal_template_are_shipped():
    services = {u.stem for u in UNITS if not u.stem.endswith("@")}
    assert services == {"toda-dagster-daemon", "toda-dagster-webserver", "toda-portal"}
    target = _unit(ROOT / "deploy" / "systemd" / "toda.target")
    assert set(target["Unit"]["Wants"].split()) == {f"{s}.service" for s in services}
    # many cities: one portal per city (toda-portal@<city>), its home under the deployment
    template = ROOT / "deploy" / "systemd" / "toda-portal@.service"
    assert _environment_files(template) == ["/etc/toda/toda.env", "/etc/toda/portal-%i.env"]
    assert "--home ${TODA_DEPLOYMENT}/cities/%i" in _unit(template)["Service"]["ExecStart"]


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.stem)
def test_a_unit_restarts_starts_at_boot_and_reads_the_environment(unit, monkeypatch):
    u = _unit(unit)
    assert u["Service"]["Restart"] == "always" and int(u["Service"]["RestartSec"]) > 0
    assert u["Install"]["WantedBy"] == "multi-user.target"
    assert _environment_files(unit)[0] == "/etc/toda/toda.env"
    assert u["Service"]["User"] == "toda" and u["Service"]["WorkingDirectory"] == INSTALL_ROOT
    env = dict(line.split("=", 1) for line in (ROOT / "deploy" / "toda.env.example").read_text(encoding="utf-8").splitlines()
               if line and not line.startswith("#"))
    assert env["DAGSTER_HOME"] == env["TODA_HOME"] + "/dagster"  # Paths.dagster_home
    assert env["TZ"] == "Asia/Tokyo"
    # the shipped memory limit is one the warehouse accepts (a bad size would fail every run)
    monkeypatch.setenv(MEMORY_ENV, env[MEMORY_ENV])
    assert engine_config()["memory_limit"] == "4GB"


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.stem)
def test_every_command_of_a_unit_exists_in_the_venv_and_accepts_its_options(unit):
    u = _unit(unit)
    commands = [u["Service"][k] for k in ("ExecStartPre", "ExecStart") if k in u["Service"]]
    for command in commands:
        for placeholder, value in TEMPLATE_VALUES.items():
            command = command.replace(placeholder, value)
        argv = [_local(a) for a in shlex.split(command)]
        binary = Path(argv[0])
        assert binary.parent == ROOT / ".venv" / "bin" and binary.exists(), command
        for arg in argv[1:]:
            if arg != _local(arg) or arg.startswith(str(ROOT)):
                assert Path(arg).exists(), arg
        # the options parse (an unknown one exits 2 before --help is honoured)
        out = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=180, cwd=ROOT)
        assert out.returncode == 0, command + "\n" + out.stderr[-2000:]
