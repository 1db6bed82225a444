# "socket" of the emulated ESP32 (MicroPython), after ports/esp32/modsocket.c. socket() returns a real
# Unix-port socket (ssl and select need the native object) and registers it, so vbhw's watcher can
# close it when the Wi-Fi link drops: its next read or write raises OSError. getaddrinfo() fails like
# lwIP's, with OSError(-202) (EAI_FAIL), when a name cannot be resolved, e.g. while Wi-Fi is down;
# its address is ('ip', port) as on an ESP32, and also works as the packed sockaddr the Unix socket needs.
import socket as _s
import vb_link
import vbhw

AF_INET = 2
AF_INET6 = 10
SOCK_STREAM = 1
SOCK_DGRAM = 2
SOCK_RAW = 3
IPPROTO_IP = 0
IPPROTO_TCP = 6
IPPROTO_UDP = 17
TCP_NODELAY = 1
# interpreted by the host kernel, so they keep Linux's values (lwIP's: 4095, 4, 32, 3)
SOL_SOCKET = _s.SOL_SOCKET
SO_REUSEADDR = _s.SO_REUSEADDR
SO_BROADCAST = _s.SO_BROADCAST
IP_ADD_MEMBERSHIP = _s.IP_ADD_MEMBERSHIP


class _Addr(bytes):
    # ('1.2.3.4', port) to Python code, a packed sockaddr_in to the Unix socket's connect()/bind()
    def __getitem__(self, i):
        return self._t[i]

    def __len__(self):
        return 2

    def __iter__(self):
        return iter(self._t)

    def __eq__(self, other):
        return tuple(self._t) == other if isinstance(other, tuple) else bytes.__eq__(self, other)

    def __repr__(self):
        return repr(self._t)

    def __str__(self):
        return repr(self._t)


def _numeric(host):
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts)


def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
    if not (_numeric(host) or vbhw.link_up()):
        raise OSError(-202)   # no DNS server reachable: lwip_getaddrinfo() gives EAI_FAIL
    try:
        found = [r for r in _s.getaddrinfo(host, port, AF_INET, type or SOCK_STREAM) if r[0] == AF_INET]
    except OSError:
        found = []
    if not found:
        raise OSError(-202)
    raw = bytes(found[0][-1])
    addr = _Addr(raw)
    addr._t = ("%d.%d.%d.%d" % (raw[4], raw[5], raw[6], raw[7]), raw[2] << 8 | raw[3])
    return [(AF_INET, type or SOCK_STREAM, proto, host, addr)]   # lwIP returns one result


class socket:
    def __new__(cls, af=AF_INET, type=SOCK_STREAM, proto=0):
        s = _s.socket(af, type, proto)
        vb_link.register(s)
        if not vbhw.link_up():
            s.close()   # no network interface is up: the socket cannot reach anything
        return s
