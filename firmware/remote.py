# Remote config: the retained <prefix>/<id>/config document {"version": N, "set": {key: value}}. The device
# runs /config.json plus the "set" of the last version it accepted, kept in /remote.json so it survives a
# reset. A document is checked with config.py's own rules and bounds; only config.REMOTE keys change over the
# air. Loaded at start-up and when a document arrives, then dropped (RAM).
import json
import os
import time

import config
import log
from contract import CONFIG_DOC, REMOTE_PATH, STATUS_REFUSED

_TMP = REMOTE_PATH + ".new"


class Refused(ValueError):  # what the status reports: the version refused, the key and the reason
    version = 0
    key = ""
    reason = ""


def _refused(version, key, reason):
    e = Refused(reason)
    e.version, e.key, e.reason = version, key, reason
    return e


def _user():
    # /config.json as flashed (config.load has already said what is wrong with it, if anything)
    with open(config.PATH) as f:
        return json.load(f)


def saved():
    # (version, set) in use: (0, {}) without a remote config
    try:
        with open(REMOTE_PATH) as f:
            doc = json.load(f)
        return doc[CONFIG_DOC[0]], doc[CONFIG_DOC[1]]
    except (OSError, ValueError, KeyError, TypeError):
        return 0, {}


def load():
    # (cfg, version): /config.json with the saved remote config on top. A saved one that no longer validates
    # (a re-flash changed /config.json) is set aside with one line: the flashed config runs.
    cfg = config.load()
    version, keys = saved()
    if version:
        try:
            cfg = _check(version, keys)
        except (Refused, OSError, ValueError) as e:
            log.error("remote config %d in %s not applied (%s): running %s alone" % (version, REMOTE_PATH, e,
                                                                                   config.PATH))
            version = 0
    return cfg, version


def _check(version, keys):
    # the full config with `keys` applied, or Refused naming the key
    if not isinstance(keys, dict):
        raise _refused(version, CONFIG_DOC[1], "'%s' must be a JSON object of config keys" % CONFIG_DOC[1])
    for k in keys:
        if k not in config.DEFAULTS:
            raise _refused(version, k, "unknown key")
        if k in config.NEVER_REMOTE:
            raise _refused(version, k, "never changes over the air: re-flash with 'sensorpub flash'")
        if k not in config.REMOTE:
            raise _refused(version, k, "not changeable at run time: re-flash with 'sensorpub flash'")
    user = _user()
    user.update(keys)
    try:
        return config.validate(user, "remote config %d" % version)
    except config.ConfigError as e:
        msg = str(e)
        for k in keys:
            if ("'%s'" % k) in msg:
                raise _refused(version, k, msg)
        raise _refused(version, CONFIG_DOC[1], msg)


def apply(msg, current, can_sleep=True):
    # msg: the document's bytes. None if it is not newer than `current` (already in use: every CONNECT
    # delivers the retained one again); else (version, cfg) once saved; Refused for a bad document, or for
    # deep_sleep on a board that cannot (can_sleep False)
    v, k = CONFIG_DOC
    try:
        doc = json.loads(msg)
        version = doc[v]
    except (ValueError, KeyError, TypeError):
        raise _refused(0, v, "not a JSON object with an integer '%s'" % v)
    if type(version) is not int or version < 1:
        raise _refused(0, v, "'%s' must be an integer >= 1" % v)
    if version <= current:
        return None
    keys = doc.get(k, {})
    cfg = _check(version, keys)
    if cfg["deep_sleep"] and not can_sleep:
        raise _refused(version, "deep_sleep", "this board cannot deep sleep (it has no deepsleep())")
    with open(_TMP, "w") as f:  # written aside, then renamed: a power cut leaves the old file or the new one
        json.dump({v: version, k: keys}, f)
    os.rename(_TMP, REMOTE_PATH)
    return version, cfg


def configure(p):
    # p: the Publisher, whose session received a document: apply it, or refuse it and keep the config in use;
    # either way the retained status says which version runs
    msg, p.sess.inbox = p.sess.inbox, None
    refused = done = None
    try:  # not newer than the one in use or the last refused (every CONNECT delivers it again): None
        done = apply(msg, max(p.version, p.refused), hasattr(p.board, "deepsleep"))
    except Refused as e:
        refused = e
    except (OSError, ValueError) as e:  # flash full, or a /config.json that no longer loads
        refused = _refused(0, "", "%s %s" % (type(e).__name__, e))
    if refused:
        p.refused = refused.version
        log.error("remote config %d refused: %s: %s; config %d stays" % (refused.version, refused.key,
                                                                         refused.reason, p.version))
    elif done:
        p.version, new = done
        for k in config.REMOTE:
            p.cfg[k] = new[k]
        p.sess.configure()
        now, interval = time.ticks_ms(), p.cfg["interval_s"] * 1000
        if time.ticks_diff(p.due, now) > interval:  # a shorter interval starts now, not at the old due time
            p.due = time.ticks_add(now, interval)
        log.info("remote config %d applied: %s" % (p.version, bytes(msg[:200]).decode()))
    else:
        return
    p.notes[0] = "" if refused is None else STATUS_REFUSED % (refused.version, json.dumps(refused.key),
                                                              json.dumps(refused.reason[:120]))
    p.announce()
