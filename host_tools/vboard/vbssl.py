# `ssl` for the virtual board (MicroPython): the Unix port's own, except that SSLContext remembers the TCP
# socket under each TLS socket it wraps, so vbselect's poll() can sleep on it.
import ssl as _ssl

RAW = []  # (TLS socket, its TCP socket) of the last few wrapped; a firmware holds one connection at a time


class SSLContext(_ssl.SSLContext):
    def wrap_socket(self, sock, *args, **kw):
        s = super().wrap_socket(sock, *args, **kw)
        RAW[:] = RAW[-2:] + [(s, sock)]
        return s


def __getattr__(name):
    return getattr(_ssl, name)
