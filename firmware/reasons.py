# One console line for each way a link fails: the reason and, where there is one, the fix. Kept apart from
# session.py so each module compiles in a small heap (a board given .py sources compiles them itself).
import errno
import sys
import time

from contract import CA_FILE, CERT_DIR, CERT_FILE

_TIMEOUTS = (errno.ETIMEDOUT, errno.EAGAIN, errno.EINPROGRESS)  # what a socket timeout raises
# mbedTLS codes MicroPython raises as OSError(-code); see mbedtls/x509.h and ssl.h
_HINTS = {
    -0x2700: "broker certificate not trusted: %s/%s is not the broker's CA, or the broker host is not in its "
             "certificate" % (CERT_DIR, CA_FILE),
    -0x7780: "broker rejected the TLS handshake: is %s/%s issued by the broker's CA, and not revoked?"
             % (CERT_DIR, CERT_FILE),
    -0x7880: "broker closed the TLS session",
    -202: "broker host name not resolved (DNS): check broker_host and the Wi-Fi's DNS",  # ESP32 getaddrinfo
    -0x7F00: "TLS could not allocate its buffers",  # MBEDTLS_ERR_SSL_ALLOC_FAILED: the IDF heap, not the GC heap
    errno.ECONNREFUSED: "connection refused: nothing listens there (broker down, or wrong broker_port)",
    errno.EHOSTUNREACH: "broker host unreachable: check broker_host and the network",
    errno.ENOMEM: "TLS could not allocate its buffers",
}
_ALLOC = (-0x7F00, errno.ENOMEM)


def _clock_unset():
    return time.gmtime()[0] < 2025  # an ESP32 starts in 2000 until NTP (or the RTC) sets it


def _heap():
    # what an allocation failure in TLS should report: the IDF heap where the board has one
    import gc
    gc.collect()
    out = "GC heap free %d" % gc.mem_free()
    try:
        import esp32
        out += ", IDF heap largest free block %d" % max(h[2] for h in esp32.idf_heap_info(esp32.HEAP_DATA))
    except (ImportError, AttributeError, ValueError):
        pass
    return out
def why(e):
    # one short reason for a failure, with a hint for the TLS errors users meet
    if isinstance(e, OSError) and e.args:
        c = e.args[0]
        if isinstance(c, str):
            return c
        if c == -0x2700 and _clock_unset():  # the same code as an untrusted certificate: say which it is
            return "clock not set (year %d): the broker's certificate dates cannot be checked; is NTP reachable? (%s)" \
                % (time.gmtime()[0], c)
        if c in _ALLOC:
            return "%s (%s; %s): collected, will retry" % (_HINTS[c], c, _heap())
        if c in _HINTS:
            return "%s (%s)" % (_HINTS[c], c)
        if c in _TIMEOUTS:
            return "timed out"
        return "OSError %s" % (e.args,)
    if isinstance(e, ValueError):  # mbedTLS verify failure, as MicroPython raises it
        return "%s (%s)" % (_HINTS[-0x2700], str(e).strip())
    from umqtt.simple import MQTTException  # here, not at the top: missing_module() works without umqtt
    if isinstance(e, MQTTException):
        return "CONNACK refused, code %s (1-5: protocol, id, unavailable, user, not authorised)" % (e.args,)
    if isinstance(e, MemoryError):
        import gc
        gc.collect()
        return "out of memory (heap free %d)" % gc.mem_free()
    return "%s %s" % (type(e).__name__, e.args)


def _date(t):
    return "%04d-%02d-%02d" % t[:3]


def _validity():
    # our certificate's (not_before, not_after) as UTC tuples, read from flash again: nothing of the
    # credentials stays in RAM after boot (creds.py and certinfo.py are dropped then)
    try:
        with open("%s/%s" % (CERT_DIR, CERT_FILE), "rb") as f:
            der = f.read()
        import certinfo
        try:
            return certinfo.validity(der)
        finally:
            del sys.modules["certinfo"]
    except (OSError, ImportError, MemoryError):  # no file, an incomplete flash, no RAM: the general reason
        return None


def refused_after_handshake():
    # the broker ended the connection during the TLS handshake or before CONNACK: it refused our certificate.
    # Which reason it had is in its log, not here; our own certificate's dates against the clock tell two.
    v = _validity()
    if v and not _clock_unset():
        now = time.gmtime()[:6]
        if now > v[1]:
            return ("our certificate %s/%s expired on %s: renew it with 'sensorpub pki renew <name>' "
                    "and 'sensorpub flash --certs-only'" % (CERT_DIR, CERT_FILE, _date(v[1])))
        if now < v[0]:
            return ("our certificate %s/%s is not valid before %s: the board's clock or the "
                    "certificate's dates are wrong" % (CERT_DIR, CERT_FILE, _date(v[0])))
    return ("the broker ended the connection at the TLS handshake: it refused our certificate "
            "(revoked? issued by another CA?), or it is shutting down; its log says which")


# the app's rare lines, kept here so they cost no RAM until they are needed

def clock_unset(ntp_host):
    return ("clock not set: no answer from NTP server '%s' (ntp_host), and TLS needs the date to check the "
            "broker's certificate" % ntp_host)


def store_failed(e):
    if isinstance(e, OSError) and e.args and e.args[0] == 28:  # ENOSPC
        return "flash full (ENOSPC): free space with 'mpremote fs rm' or lower outbox_slots"
    return "%s %s" % (type(e).__name__, e)


def missing_module(e):
    if "umqtt" in str(e):
        return ("umqtt.simple missing (%s): this MicroPython build does not freeze it; flash stock ESP32 "
                "MicroPython 1.23+ or run 'mpremote mip install umqtt.simple'" % e)
    return "firmware incomplete (%s): re-run 'sensorpub flash'" % e


def sub_refused(topic):
    from contract import CERT_LEAF
    what = "certificate renewal" if topic.endswith("/" + CERT_LEAF) else "remote config"
    return ("%s off until the next boot: the broker refused our subscription to %s (a broker ACL or AWS policy "
            "from before it: re-run 'sensorpub broker start' or 'sensorpub aws register-device')" % (what, topic))
