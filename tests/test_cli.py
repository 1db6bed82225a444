"""Every command: --help works, bad input is one line on stderr with a non-zero exit, no traceback."""
import pytest

from conftest import run_cli

COMMANDS = [["pki", "init"], ["pki", "server"], ["pki", "device"], ["pki", "verifier"], ["pki", "list"],
            ["pki", "revoke"], ["broker", "start"], ["broker", "stop"], ["broker", "status"], ["broker", "logs"],
            ["verify"], ["pki", "renew"], ["pki", "crl"], ["vboard", "power-cut"], ["aws", "revoke"],
            ["flash"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=" ".join)
def test_help(cmd):
    r = run_cli(*cmd, "--help")
    assert r.returncode == 0 and "usage:" in r.stdout


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
    (["broker", "status"], ""),
    (["verify", "--count", "3"], "--count needs --device"),
    (["verify", "--port", "1", "--timeout", "1"], "missing"),
    (["pki", "renew", "ghost"], "pki init"),
    (["pki", "crl"], "pki init"),
    (["vboard", "power-cut", "--name", "nope"], "is not running"),
    (["nosuchcommand"], "invalid choice"),
]


@pytest.mark.parametrize("cmd,text", BAD, ids=[" ".join(c) for c, _ in BAD])
def test_bad_input_is_one_line(home, cmd, text):
    r = run_cli(*cmd)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    if text:
        assert len(errors) == 1, r.stderr  # progress lines may precede it; the error itself is one line
        assert text in errors[0]

