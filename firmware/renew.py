# Certificate renewal over MQTT. The retained <prefix>/<id>/cert holds a certificate (DER) the host issued for
# this device's own key ('sensorpub pki renew NAME --push': the private key never travels). The device checks
# what it can (one DER certificate, for its own public key, from the issuer of the one in use, for the same
# subject, valid now), writes it beside the one in use (contract.CERT_NEW), reconnects with it and keeps it only
# if the broker accepts that connection (the broker checks the CA's signature and the revocation list, which
# the device cannot); otherwise it rolls back to the certificate in use. The retained status says which
# certificate runs ("cert": its serial) and what was refused and why ("cert_refused"). Loaded when a
# certificate arrives, then dropped (RAM).
import gc
import json
import os
import time

import certinfo
import creds
import log
from contract import CERT_FILE, CERT_NEW, STATUS_CERT_REFUSED

FIX = "issue it for the key the board has: 'sensorpub pki renew NAME --push'"


def _when(t):
    return "%04d-%02d-%02d %02d:%02d:%02d UTC" % t[:6]


def check(new, old, key, now):
    # why the certificate `new` cannot replace `old` for the private key `key` at `now` (a UTC tuple), or None
    if not creds.der_ok(new):
        return "not one DER certificate (PEM, or damaged): push the DER file"
    spki, pub = certinfo.field(new, certinfo.KEY), certinfo.public_key(key)
    if spki is None:
        return "not a certificate that can be read: push the DER file"
    if pub is None or pub not in spki:
        return "it is for another key than this device's: " + FIX
    if certinfo.field(new, certinfo.ISSUER) != certinfo.field(old, certinfo.ISSUER):
        return "issued by another CA than certificate %s in use: %s" % (certinfo.serial(old), FIX)
    if certinfo.field(new, certinfo.SUBJECT) != certinfo.field(old, certinfo.SUBJECT):
        return "issued for another subject than certificate %s in use (this device's name)" % certinfo.serial(old)
    dates = certinfo.validity(new)
    if dates is None:
        return "its validity dates cannot be read"
    if now < dates[0]:
        return "not valid before %s (the device's clock: %s)" % (_when(dates[0]), _when(now))
    if now > dates[1]:
        return "expired on %s: issue a new one" % _when(dates[1])
    return None


def _read(name):
    with open(creds.DIR + "/" + name, "rb") as f:
        return f.read()


def _refuse(p, serial, reason):
    p.cert_refused = serial
    p.notes[1] = STATUS_CERT_REFUSED % (serial, json.dumps(reason[:120]))
    log.error("certificate %s refused: %s; certificate %s stays in use" % (serial, reason, p.serial))
    p.announce()


def _use(p, name):
    # build the TLS context of certificate file `name` (with the key and CA in use): (expires, serial). The old
    # context goes first, and the closed link that refers to it: a second context beside it may not fit the heap
    p.sess.tls.ctx = p.sess.tls.link = None
    gc.collect()
    ctx, expires, serial = creds.context(name)
    p.sess.tls.ctx = ctx
    return expires, serial


def run(p):
    # p: the Publisher, whose session received a certificate
    msg, p.sess.certbox = p.sess.certbox, None
    old = _read(CERT_FILE)
    if msg == old or not msg:  # every CONNECT delivers the retained one again; an empty one was cleared
        return
    serial = certinfo.serial(msg)
    if serial == p.cert_refused:  # refused once this boot: not tried again until the next
        return
    why = check(msg, old, _read(creds.KEY_FILE), time.gmtime()[:6])
    del old
    if why:
        return _refuse(p, serial, why)
    trial = creds.DIR + "/" + CERT_NEW
    p.trial = True  # from here a MemoryError restarts the publisher with the old certificate (app.py)
    with open(trial, "wb") as f:  # beside the one in use: a reset during the trial drops it (startup.py)
        f.write(msg)
    del msg
    log.info("certificate %s received: reconnecting with it (certificate %s in use until it works)"
             % (serial, p.serial))
    was = p.serial
    sess = p.sess
    sess.close(disconnect=True)  # a planned reconnect: DISCONNECT, so no Last Will
    try:
        expires, _ = _use(p, CERT_NEW)
    except (ValueError, OSError) as e:  # mbedTLS cannot use it (creds.CredsError is a ValueError)
        os.remove(trial)
        _use(p, CERT_FILE)
        return _refuse(p, serial, "the TLS stack cannot use it (%s)" % e)
    except MemoryError:  # the heap is too fragmented now; after a reset it is whole, and the retained one comes again
        os.remove(trial)
        _use(p, CERT_FILE)
        return _refuse(p, serial, "not enough memory to load it (%d bytes free): it is tried again after a reset"
                       % gc.mem_free())
    p.serial, p.notes[1] = serial, ""
    p.announce()  # the status sent on the trial connection names the new certificate
    sess.retry_at = time.ticks_ms()
    if sess.connect():
        os.rename(trial, creds.DIR + "/" + CERT_FILE)  # replaces the old one in one step
        p.expires = expires
        log.info("certificate %s in use (was %s): the broker accepted it" % (serial, was))
        return
    reached = sess.tls.reached
    os.remove(trial)
    p.serial = was
    _use(p, CERT_FILE)
    if reached:  # TCP and the handshake started: the broker would not take it
        return _refuse(p, serial, "the broker refused the connection made with it (not signed by a CA it "
                                  "trusts, or revoked); rolled back")
    p.announce()
    log.warn("certificate %s not tried: the broker could not be reached; certificate %s stays, the next "
             "connection tries again" % (serial, was))
