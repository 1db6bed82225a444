# DER credentials from /certs and the TLS context. Server verification is always on.
import gc
import ssl
import sys
import time

from contract import CA_FILE, CERT_DIR, CERT_FILE, KEY_FILE

DIR = CERT_DIR  # a test points it elsewhere
FIX = "run 'sensorpub flash --device <name>' on the host"


class CredsError(ValueError):  # a ValueError, so the caller can drop this module once the context is built
    pass


def der_ok(b):
    # one DER SEQUENCE spanning the whole file: catches PEM, truncation and junk before mbedTLS does
    if len(b) < 4 or b[0] != 0x30:
        return False
    n = b[1]
    if n < 0x80:
        return 2 + n == len(b)
    k = n & 0x7F
    if k > 3 or len(b) < 2 + k:
        return False
    ln = 0
    for i in range(k):
        ln = (ln << 8) | b[2 + i]
    return 2 + k + ln == len(b)


def _read(name):
    path = DIR + "/" + name
    try:
        with open(path, "rb") as f:
            b = f.read()
    except OSError:
        raise CredsError(path + " missing: " + FIX)
    if not b:
        raise CredsError(path + " is empty: " + FIX)
    if not der_ok(b):
        raise CredsError(path + " is not DER (PEM or damaged?): " + FIX)
    return b


def context(cert_file=CERT_FILE):
    # (the TLS context, the certificate's notAfter in this port's epoch seconds or None, its serial in hex).
    # cert_file: a pushed certificate on trial (renew.py) instead of the one in use
    cert, key, ca = _read(cert_file), _read(KEY_FILE), _read(CA_FILE)
    import certinfo  # loaded for a few facts, then dropped: its RAM goes to the TLS context
    try:
        pub = certinfo.public_key(key)
        dates = certinfo.validity(cert)
        serial = certinfo.serial(cert)
    finally:
        del sys.modules["certinfo"], certinfo
    if pub is not None and pub not in cert:  # TLS would fail later with a reason that names neither file
        raise CredsError("%s/%s does not belong to %s/%s (their public keys differ): %s"
                         % (DIR, KEY_FILE, DIR, cert_file, FIX))
    del pub
    gc.collect()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED  # type: ignore[attr-defined]  # real ssl has it; the stubs lack it
    try:
        ctx.load_verify_locations(cadata=ca)
    except (ValueError, OSError) as e:
        raise CredsError("%s/%s cannot be parsed (%s): %s" % (DIR, CA_FILE, e, FIX))
    try:
        ctx.load_cert_chain(cert, key)
    except (ValueError, OSError) as e:
        raise CredsError("%s/%s or %s cannot be used (%s): %s" % (DIR, cert_file, KEY_FILE, e, FIX))
    del cert, key, ca
    return ctx, (time.mktime(dates[1] + (0, 0)) if dates else None), serial
