# "sys" of the emulated ESP32 (MicroPython): the Unix port's sys objects under the names an ESP32 build
# has (py/modsys.c with the ESP32's ROM level), reporting the profile's platform, version and
# implementation. Other names of the Unix sys (executable, getsizeof, atexit ...) are absent, as on
# the ESP32. sys.path is the interpreter's own list, so it also shows /.vb/frozen.
import vbhw

_s = vbhw.real_sys
_p = vbhw.prof()


class _AttrTuple(tuple):
    # like the C attrtuple of sys.implementation and os.uname(): a tuple with named fields
    _fields = ()

    def __getattr__(self, name):
        if name in self._fields:
            return self[self._fields.index(name)]
        raise AttributeError(name)

    def __repr__(self):
        return "(" + ", ".join("%s=%r" % (k, v) for k, v in zip(self._fields, self)) + ")"

    def __str__(self):
        return self.__repr__()


def _attrtuple(pairs):
    class T(_AttrTuple):
        _fields = tuple(k for k, _ in pairs)
    return T(tuple(tuple(v) if isinstance(v, list) else v for _, v in pairs))

argv = []
byteorder = "little"
exit = _s.exit
implementation = _attrtuple(_p.get("implementation") or [["name", "micropython"]])
maxsize = _p.get("maxsize", 1073741823)
modules = _s.modules
path = _s.path
platform = "esp32"
print_exception = _s.print_exception
ps1 = ">>> "
ps2 = "... "
stdin = _s.stdin
stdout = _s.stdout
stderr = _s.stderr
version = _p.get("sys_version", "3.4.0; MicroPython")
version_info = (3, 4, 0)
