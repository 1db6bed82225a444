# What the firmware does once a boot or once a publisher start: count the boot, load the config (with the remote
# config in use), build the board and the TLS context, fill in the online status. app.main() drops this module
# afterwards, so none of its code (nor config's, remote's or creds') holds RAM while publishing.
import gc
import os
import sys
import time

import log
from contract import CERT_FILE, CERT_NEW, FW_VERSION, STATUS_ONLINE

BOOTS = "/boots"  # the boot count, reported in the online status


def count():
    # this boot's number (1 on the first boot, or after the file was lost or damaged). A wake from deep sleep
    # is not a boot: battery mode writes no flash for it
    try:
        import machine
        woke = machine.reset_cause() == machine.DEEPSLEEP_RESET
    except (ImportError, AttributeError):  # the bare Unix port
        woke = False
    try:
        with open(BOOTS) as f:
            n = int(f.read()) + (0 if woke else 1)
    except (OSError, ValueError):
        n = 1
    if woke:
        return n
    try:
        with open(BOOTS, "w") as f:
            f.write(str(n))
    except OSError as e:  # a full or read-only file system: the count restarts, the board runs on
        log.warn("boot count not saved to %s: %s" % (BOOTS, e))
    return n


def _retry(what, fn, cap):
    # run fn until it works, logging one line per failure and backing off 1, 2, 4... cap s
    delay = 1
    while True:
        try:
            return fn()
        except (OSError, ValueError) as e:  # config.ConfigError and creds.CredsError are ValueErrors
            log.error("%s: %s; retrying in %d s" % (what, e, delay))
        time.sleep(delay)
        delay = min(delay * 2, cap)


def prepare(board_module, n):
    # the Publisher's arguments (cfg, board, ctx, expires, online, remote config version, certificate serial);
    # n: this boot's number
    gc.collect()
    import remote
    cfg, version = _retry("config", remote.load, 60)  # /config.json, and the remote config in use on top
    del sys.modules["remote"], remote, sys.modules["config"]  # done with: the RAM goes to TLS
    name = board_module.NAME
    log.info("device %s, broker %s:%d, board %s" % (cfg["device_id"], cfg["broker_host"], cfg["broker_port"], name))

    def make():
        b = board_module.Board(cfg)
        if cfg["deep_sleep"] and not hasattr(b, "deepsleep"):  # _board.py: deepsleep() is optional
            raise ValueError("config key 'deep_sleep' is true: board %s cannot deep sleep (use an ESP32 board): "
                             "re-flash with --set deep_sleep=false" % name)
        return b

    board = _retry("board", make, cfg["backoff_cap_s"])
    import creds
    try:  # a pushed certificate whose trial a reset or a crash cut short: the one in use stays
        os.remove(creds.DIR + "/" + CERT_NEW)
        log.warn("%s/%s: a certificate trial was cut short (a reset or a crash): still using %s"
                 % (creds.DIR, CERT_NEW, CERT_FILE))
    except OSError:
        pass
    ctx, expires, serial = _retry("credentials", creds.context, cfg["backoff_cap_s"])
    del sys.modules["creds"], creds  # done with once the TLS context is built: its RAM goes to the session
    mp = "%d.%d.%d" % sys.implementation.version[:3]
    online = (STATUS_ONLINE % (board.reset_cause(), FW_VERSION, name, mp, n, serial, version, "")).encode()
    # armed last (the waits above do not feed it), and here rather than in app.py: this module's RAM is given back
    if cfg["wdt_s"] and board.watchdog(cfg["wdt_s"]):
        log.info("watchdog on: a hang restarts the board after %d s (it keeps running at the REPL)" % cfg["wdt_s"])
    return cfg, board, ctx, expires, online, version, serial
