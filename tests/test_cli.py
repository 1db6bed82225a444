"""Every command: --help works and has examples, the README shows it, bad input is one line on stderr
with the documented exit status (1 for a refused input, 2 for a usage mistake), no traceback."""
import argparse
from pathlib import Path

import pytest

from conftest import run_cli
from host_tools import cli
from host_tools.cli import build_parser

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _commands():
    """Every command and sub-action the parser knows, e.g. ['pki', 'init'] and ['verify']."""
    def subs(p):
        return next((a.choices for a in p._actions if isinstance(a, argparse._SubParsersAction)), None)
    out = []
    for name, p in subs(build_parser()).items():
        actions = subs(p)
        out += [[name, a] for a in actions] if actions else [[name]]
    return out


COMMANDS = _commands()


def test_the_table_has_every_command():
    assert ["pki", "renew"] in COMMANDS and ["vboard", "power-cut"] in COMMANDS and ["verify"] in COMMANDS
    assert len(COMMANDS) >= 28, COMMANDS  # 8 pki, 4 broker, 7 aws, 6 vboard, verify, flash, console


def _help(capsys, *cmd):
    """`sensorpub CMD --help` in this process (the parser the command runs; a process per command cost 74
    Python start-ups): (exit status, stdout)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli.main([*cmd, "--help"])
    return e.value.code, capsys.readouterr().out


def test_help_as_the_installed_command_lists_every_command():
    r = run_cli("--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: sensorpub"), r.stdout[:200] + r.stderr
    assert all(c[0] in r.stdout for c in COMMANDS), r.stdout


@pytest.mark.parametrize("cmd", COMMANDS, ids=" ".join)
def test_help_and_the_readme_show_it(cmd, capsys):
    code, out = _help(capsys, *cmd)
    assert code == 0 and out.startswith("usage: sensorpub " + " ".join(cmd)), out[:200]
    _, top = _help(capsys, cmd[0])
    assert "examples:" in top, f"'sensorpub {cmd[0]} --help' shows no examples"
    assert "sensorpub " + " ".join(cmd) in README, f"README.md shows no 'sensorpub {' '.join(cmd)}'"


BAD = [
    (["pki", "device", "a/b"], "invalid device name"),
    (["pki", "device", "dev1"], "pki init"),
    (["pki", "init", "--key-type", "dsa"], "invalid choice"),
    (["pki", "init", "--fleet", "../x"], "invalid fleet name"),
    (["pki", "server", "--ip", "not-an-ip"], "is not an IP address"),
    (["pki", "list"], "pki init"),
    (["pki", "revoke", "ghost"], "no device 'ghost'"),
    (["broker", "start", "--port", "0"], "not a TCP port"),
    (["broker", "start"], "pki init"),
    (["broker", "logs"], "does not exist"),
    (["verify", "--count", "3"], "--count needs --device"),
    (["verify", "--port", "1", "--timeout", "1"], "missing"),
    (["pki", "renew", "ghost"], "pki init"),
    (["pki", "crl"], "pki init"),
    (["vboard", "power-cut", "--name", "nope"], "is not running"),
    (["nosuchcommand"], "invalid choice"),
    (["flash", "--port", "vboard", "--device", "dev1", "--aws-root-ca", "x.pem"], "--aws-root-ca is for --target aws"),
    (["verify", "--alpn", "--timeout", "1"], "--alpn is for --target aws"),
    (["aws", "rule", "create"], "say where the readings go: --lambda FUNCTION_ARN, or --dynamodb TABLE"),
    (["aws", "rule", "create", "--dynamodb", "readings"], "--dynamodb needs --role-arn ROLE_ARN"),
    (["vboard", "status", "--fleet", "f" * 60], "too long to name its virtual board"),
    (["console", "--fleet", "site1", "--port", "vboard"], "start it with 'sensorpub vboard start --fleet site1'"),
]
USAGE = ("invalid choice",)  # argparse's: exit status 2


@pytest.mark.parametrize("cmd,text", BAD, ids=[" ".join(c) for c, _ in BAD])
def test_bad_input_is_one_line(home, cmd, text):
    r = run_cli(*cmd)
    assert "Traceback" not in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1, r.stderr  # progress lines may precede it; the error itself is one line
    assert text in errors[0], errors[0]
    usage = any(u in text for u in USAGE)
    assert r.returncode == (2 if usage else 1), (r.returncode, r.stderr)
    assert r.stdout == ""


def test_broker_status_of_a_stopped_broker_is_exit_3(home):
    r = run_cli("broker", "status")
    assert (r.returncode, r.stdout.strip(), r.stderr) == (3, "not running", "")



def test_output_into_a_closed_pipe_is_not_an_internal_error(fleet):
    import subprocess
    import sys
    assert run_cli("pki", "device", "--count", "600", "--prefix", "d").returncode == 0  # > a 64 KB pipe of JSON
    p = subprocess.run(f"{sys.executable} -m host_tools pki list --json | head -c 10", shell=True,
                       capture_output=True, text=True)
    assert len(p.stdout) == 10 and "internal error" not in p.stderr and "Traceback" not in p.stderr, p.stderr
