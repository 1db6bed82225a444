# Facts about the DER credentials that TLS would only reveal as an opaque failure: a certificate's validity
# dates, serial number, issuer, subject and public key, and the public key a private key carries (to check the
# pair). Loaded for these checks (by creds.py at start, by reasons.py when the broker refuses us, by renew.py
# for a pushed certificate), then dropped from memory.


def _tlv(b, i):
    # (tag, start of content, length) of the DER element at i
    n = b[i + 1]
    j = i + 2
    if n & 0x80:
        k = n & 0x7F
        n = 0
        for x in range(k):
            n = (n << 8) | b[j + x]
        j += k
    return b[i], j, n


def _tbs(cert):
    # the TBSCertificate's fields after the [0] version as (tag, start of content, length): serial number,
    # signature algorithm, issuer, validity, subject, subjectPublicKeyInfo
    _, i, _ = _tlv(cert, 0)          # Certificate
    _, i, n = _tlv(cert, i)          # TBSCertificate
    end = i + n
    out = []  # type: list
    while i < end and len(out) < 6:
        t, j, n = _tlv(cert, i)
        if t != 0xA0:
            out.append((t, j, n))
        i = j + n
    if len(out) < 6 or i > len(cert):
        raise IndexError("short certificate")
    return out


def field(cert, k):
    # the content of TBSCertificate field k (SERIAL, ISSUER, SUBJECT, KEY) as bytes; None if unreadable
    try:
        _, j, n = _tbs(cert)[k]
        return bytes(cert[j:j + n])
    except (IndexError, ValueError):
        return None


SERIAL, ISSUER, SUBJECT, KEY = 0, 2, 4, 5


def serial(cert):
    # the serial number in lowercase hex without leading zeros (as the host prints it); "?" if unreadable
    b = field(cert, SERIAL)
    if not b:
        return "?"
    return "".join("%02x" % x for x in b).lstrip("0") or "0"


def validity(cert):
    # notBefore and notAfter of a DER certificate as UTC tuples; None if it cannot be read
    try:
        _, i, _ = _tbs(cert)[3]      # Validity
        out = []
        for _ in range(2):
            t, j, n = _tlv(cert, i)
            s = bytes(cert[j:j + n]).decode()
            if t == 0x17:            # UTCTime YYMMDDHHMMSSZ
                y = int(s[:2])
                s = ("20" if y < 50 else "19") + s
            out.append(tuple(int(s[k:k + 2 if k else 4]) for k in (0, 4, 6, 8, 10, 12)))
            i = j + n
        return out[0], out[1]
    except (IndexError, ValueError, UnicodeError):
        return None


def public_key(key):
    # the public key a private key DER carries (EC: the 65-byte point; RSA: the modulus), or None
    i = key.find(b"\x03\x42\x00\x04")
    if i >= 0:
        return key[i + 3:i + 68]
    i = key.find(b"\x02\x01\x00\x02\x82", 20)
    if i >= 0:
        n = (key[i + 5] << 8) | key[i + 6]
        return key[i + 7:i + 7 + n]
    return None
