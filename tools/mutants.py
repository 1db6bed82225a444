"""Put deliberate bugs into the code one at a time and count how many the tests catch (run on demand).

Each mutant is a one-place edit (the text to find must occur exactly once, so a refactor that moves
it makes the tool say so instead of silently testing nothing) and the tests expected to catch it.
The edit is made in a copy of the checkout, never in the working tree.

    .venv/bin/python tools/mutants.py                 # every mutant against its tests
    .venv/bin/python tools/mutants.py --list
    .venv/bin/python tools/mutants.py outbox-newest-only jitter-removed
    .venv/bin/python tools/mutants.py --full          # against the whole suite (slow: ~3 min each)
    .venv/bin/python tools/mutants.py --json out.json

Add a mutant whenever a feature lands: the bug you are most afraid of, in one line.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Mutant:
    name: str
    path: str
    old: str
    new: str
    tests: List[str]
    what: str


M = Mutant
MUTANTS = [
    # --- firmware: nothing lost ---
    M("outbox-newest-only", "firmware/outbox.py", "        if len(self) >= self.n:\n            self._drop()",
      "        if len(self) >= 1:\n            self._drop()", ["tests/test_firmware_e2e.py -k backoff_grows", "tests/test_chaos.py -k outage"],
      "the outbox keeps only the newest reading: readings taken during an outage are lost"),
    M("outbox-not-reloaded", "firmware/outbox.py", '            if name[0] == "q" and k >= 0:',
      '            if False:', ["tests/test_outbox.py", "tests/test_firmware_e2e.py -k seq_survives", "tests/test_chaos.py -k power_cuts"],
      "readings queued on flash are forgotten at boot: a reset with readings queued loses them"),
    M("seq-not-advanced-on-ack", "firmware/outbox.py", "            os.rename(self._path(\"q\", self.head), d_a(self.d))\n            self.head += 1",
      "            os.rename(self._path(\"q\", self.head), d_a(self.d))", ["tests/test_outbox.py", "tests/test_firmware_e2e.py"],
      "an acknowledged reading stays at the head of the outbox: it is sent again and again"),
    # --- firmware: reconnecting ---
    M("backoff-cap-ignored", "firmware/session.py",
      'win = min(self.cfg["backoff_cap_s"], self.cfg["backoff_base_s"] * (1 << min(self.attempt - 1, 16)))',
      'win = self.cfg["backoff_base_s"] * (1 << min(self.attempt - 1, 16))', ["tests/test_session.py", "tests/test_firmware_e2e.py -k backoff_grows"],
      "the backoff window grows past backoff_cap_s"),
    M("jitter-removed", "firmware/session.py", "delay = random.getrandbits(16) * win / 65536",
      "delay = win", ["tests/test_session.py", "tests/test_firmware_e2e.py -k backoff_grows"], "every device waits the whole window: a thundering herd"),
    M("read-timeout-never", "firmware/link.py", "                if left <= 0:\n                    raise OSError(ETIMEDOUT)",
      "                if left <= 0:\n                    end = time.ticks_add(time.ticks_ms(), self.t)",
      ["tests/test_firmware_e2e.py -k blackholed", "tests/test_chaos.py -k dead_link"],
      "a broker that accepts and then stays silent hangs the device"),
    M("probe-never", "firmware/session.py", "if time.ticks_diff(now, self.probe_at) >= 0 and self._probe():",
      "if False:", ["tests/test_firmware_e2e.py -k probe"],
      "a broker back after a long outage is found only at the end of a 60 s back-off window"),
    M("probe-despite-refusal", "firmware/session.py", "elif self.probe_ms and not self.tls.reached:",
      "elif self.probe_ms:", ["tests/test_firmware_e2e.py -k another_ca"],
      "a device the broker refuses at TLS probes and reconnects every few seconds instead of backing off"),
    M("no-last-will", "firmware/session.py", "            c.set_last_will(self.status, self.OFFLINE_LOST, retain=True, qos=1)",
      "            pass", ["tests/test_chaos.py -k ctrl_c", "tests/test_esp32_virtual.py -k watchdog"], "no Last Will: a dead device still shows online"),
    M("bug-hidden-as-link-loss", "firmware/session.py", "        bug = not is_link_error(e)", "        bug = False",
      ["tests/test_firmware_bugs.py"], "a programming error is treated as a lost link: no traceback"),
    # --- firmware: bad input ---
    M("truncated-der-accepted", "firmware/creds.py", "    return 2 + k + ln == len(b)", "    return True",
      ["tests/test_firmware_e2e.py -k corrupt_der"], "a truncated DER key reaches mbedTLS instead of one clear line"),
    M("reading-fields-unordered", "firmware/app.py", "r = OrderedDict()", "r = {}",
      ["tests/test_firmware_e2e.py -k consecutive"], "readings no longer start with device_id and seq: the outbox "
      "cannot store them compactly"),
    # --- firmware: certificate renewal ---
    M("renewal-any-issuer", "firmware/renew.py",
      "    if certinfo.field(new, certinfo.ISSUER) != certinfo.field(old, certinfo.ISSUER):", "    if False:",
      ["tests/test_cert_renewal.py -k bad_certificates"], "a pushed certificate from another CA is tried, not refused"),
    M("renewal-kept-untried", "firmware/renew.py", "    if sess.connect():", "    if sess.connect() or True:",
      ["tests/test_cert_renewal.py -k bad_certificates"],
      "a pushed certificate the broker refuses is kept: the device locks itself out"),
    M("renewal-without-collect", "firmware/app.py", "        gc.collect()\n        try:\n            import renew",
      "        try:\n            import renew", ["tests/test_cert_renewal.py -k 90k"],
      "a renewal starts on a heap full of garbage: the second in a row runs out of memory"),
    M("config-without-collect", "firmware/app.py",
      "        gc.collect()\n        import remote\n        try:\n            remote.configure(self)\n        finally:\n"
      "            del sys.modules[\"remote\"], remote\n            sys.modules.pop(\"config\", None)\n            gc.collect()\n",
      "        import remote\n        try:\n            remote.configure(self)\n        finally:\n"
      "            del sys.modules[\"remote\"], remote\n            sys.modules.pop(\"config\", None)\n",
      ["tests/test_remote_config.py -k ten_changes"],
      "a remote config is compiled on a heap full of garbage: the 3rd change in a row runs out of memory"),
    M("empty-message-waits", "firmware/link.py", "        if not n:  # umqtt", "        if False:  # umqtt",
      ["tests/test_cert_renewal.py -k pushed_renewal"],
      "an empty retained message (the host clearing the cert topic) waits out the read timeout and drops the link"),
    # --- the contract ---
    M("contract-drift", "firmware/contract.py", 'TELEMETRY_LEAF = "telemetry"', 'TELEMETRY_LEAF = "telemetry2"',
      ["tests/test_contract.py"], "the board publishes on a topic the host does not read"),
    # --- host: flashing and the console ---
    M("flash-no-readback", "host_tools/flash.py", "        if tuple(got.get(path, ())) != want:", "        if False:",
      ["tests/test_board_tools.py -k other_bytes"], "flash does not compare what the board read back"),
    M("flash-full-midwrite", "host_tools/transport.py", 'if getattr(e, "errno", None) == errno.ENOSPC:', "if False:",
      ["tests/test_board_tools.py -k filling", "tests/test_vboard.py -k full_flash"],
      "flash filling up mid-write is called a lost board instead of a full flash"),
    M("console-first-lines", "host_tools/console.py", "out.writelines(past[-lines:] if lines > 0 else [])",
      "out.writelines(past[:lines] if lines > 0 else [])", ["tests/test_board_tools.py -k console"],
      "console -n prints the first lines instead of the last"),
    M("vboard-heapsize-ignored", "host_tools/vboard/supervisor.py", '["-X", "heapsize=" + self.heapsize,',
      '["-X", "heapsize=2m",', ["tests/test_board_tools.py -k heap", "tests/test_firmware_memory.py"], "the virtual board ignores --heapsize"),
    M("raw-repl-shown", "host_tools/console.py", "        if self.raw and not _BACK.match(text):\n            return",
      "        if False:\n            return", ["tests/test_board_tools.py -k console"],
      "the console shows mpremote's raw REPL traffic"),
    M("remembered-port-ignored", "host_tools/target.py", "port or remembered_port(fleet) or DEFAULT_PORT",
      "port or DEFAULT_PORT", ["tests/test_broker.py -k later_commands"],
      "later commands forget the port the broker was started on"),
    # --- host: the broker lets nobody in who should not be ---
    M("acl-any-device-topic", "host_tools/mosquitto_conf.py", "pattern write {device_topic('%u', leaf)}",
      "pattern write {device_topic('+', leaf)}",
      ["tests/test_broker.py -k acl"], "a device may write another device's topics"),
    M("client-id-not-bound", "host_tools/mosquitto_conf.py", "{'true' if b.bind_client_id else 'false'}", "false",
      ["tests/test_broker.py -k take_over"], "a device can connect with another's client id and kick it off"),
    M("crl-not-loaded", "host_tools/mosquitto_conf.py",
      "    return lines + ([f\"crlfile {t / 'crl.pem'}\"] if \"crl.pem\" in files else [])", "    return lines",
      ["tests/test_broker.py -k revoke", "tests/test_pki.py -k revoke"], "the broker ignores the CRL"),
    M("tls-1.1-allowed", "host_tools/mosquitto_conf.py", 'TLS_MIN = "tlsv1.2"', 'TLS_MIN = "tlsv1.1"',
      ["tests/test_broker.py -k tls_versions"], "the broker accepts TLS 1.1"),
    M("private-key-world-readable", "host_tools/keys.py", "mode = 0o600 if private else 0o644",
      "mode = 0o644", ["tests/test_pki.py"], "private keys are written 0644"),
    # --- host: verify tells the truth ---
    M("verify-gaps-ignored", "host_tools/verify.py", "        return (self.max_seq - self.first_seq + 1) - len(self.seen)",
      "        return 0", ["tests/test_verify.py"], "verify reports no gap when readings are missing"),
    # --- virtual board ---
    M("lone-board-boot-executed", "host_tools/vboard/supervisor.py",
      "serve([Board(d, heapsize, blocks, spawner(mp), sel, urgent)]",
      "serve([Board(d, heapsize, blocks, exec_spawner(mp), sel, urgent)]",
      ["tests/test_vboard.py -k each_boot"], "a lone board starts a CPython program per boot instead of forking"),
    M("ctrl-c-input-not-held", "host_tools/vboard/supervisor.py",
      "            if self.pending_int or self.int_sent:", "            if self.pending_int:",
      ["tests/test_vboard.py -k behind"], "input right behind a Ctrl-C sent as SIGINT can lose a byte to it"),
]


def copy_tree(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split("\n")
    for f in filter(None, files):
        src = ROOT / f
        if src.is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)


def run_tests(tree: Path, selections: List[str], workers: int, timeout: float) -> tuple:
    env = dict(os.environ, PYTHONPATH=str(tree))
    env.setdefault("UMQTT_VERSIONS", str((ROOT.parent / "shared" / "umqtt-simple" / "versions").resolve()))
    t0, outcome = time.monotonic(), "survived"
    for sel in selections:
        path, _, k = sel.partition(" -k ")
        cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", path]
        cmd += ["-k", k.strip("'")] if k else []
        cmd += ["-n", str(workers)] if workers > 1 else []
        try:
            r = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            outcome = "caught (timeout)"
            break
        if r.returncode == 5:
            outcome = f"no tests selected by {sel!r}"
            break
        if r.returncode != 0:
            failed = [ln for ln in r.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))]
            outcome = "caught: " + (failed[0][:90] if failed else f"exit {r.returncode}")
            break
    return outcome, time.monotonic() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help="only these mutants")
    p.add_argument("--list", action="store_true", help="list the mutants and exit")
    p.add_argument("--full", action="store_true", help="run the whole suite against each mutant")
    p.add_argument("--workers", type=int, default=2, help="pytest-xdist workers (default: 2)")
    p.add_argument("--timeout", type=float, default=900, help="seconds per test run (default: 900)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    a = p.parse_args(argv)
    chosen = [m for m in MUTANTS if not a.names or m.name in a.names]
    if a.list:
        for m in MUTANTS:
            print(f"{m.name:<28} {m.path:<32} {m.what}")
        return 0
    unknown = set(a.names) - {m.name for m in MUTANTS}
    if unknown:
        sys.exit(f"mutants.py: no mutant {', '.join(sorted(unknown))} (see --list)")
    results = []
    with tempfile.TemporaryDirectory(prefix="sensorpub-mutants-") as t:
        tree = Path(t)
        copy_tree(tree)
        for m in chosen:
            target = tree / m.path
            original = target.read_text()
            if original.count(m.old) != 1:
                outcome, secs = f"STALE: the text to mutate occurs {original.count(m.old)} times in {m.path}", 0.0
            else:
                target.write_text(original.replace(m.old, m.new))
                try:
                    outcome, secs = run_tests(tree, ["tests"] if a.full else m.tests, a.workers, a.timeout)
                finally:
                    target.write_text(original)
            results.append({"name": m.name, "what": m.what, "outcome": outcome, "seconds": round(secs, 1)})
            print(f"{m.name:<28} {secs:6.1f} s  {outcome}", flush=True)
    caught = sum(r["outcome"].startswith("caught") for r in results)
    print(f"\n{caught} of {len(results)} mutants caught ({100 * caught // max(1, len(results))}%)")
    if a.json:
        Path(a.json).write_text(json.dumps({"caught": caught, "total": len(results), "mutants": results}, indent=2))
    return 0 if caught == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
