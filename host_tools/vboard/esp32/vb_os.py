# "os" of the emulated ESP32 (MicroPython): the Unix port's VFS functions under the names an ESP32
# build has (extmod/modos.c with MICROPY_PY_OS_DUPTERM, _SYNC, _UNAME, _URANDOM), and uname() as the
# profile's release prints it. getenv, system, errno and VfsPosix of the Unix os are absent.
import vb_sys
import vbhw

_o = vbhw.real_os
_term = [None]

sep = "/"
chdir = _o.chdir
getcwd = _o.getcwd
ilistdir = _o.ilistdir
listdir = _o.listdir
mkdir = _o.mkdir
remove = _o.remove
rename = _o.rename
rmdir = _o.rmdir
stat = _o.stat
statvfs = _o.statvfs
unlink = _o.remove
urandom = _o.urandom
mount = _o.mount
umount = _o.umount
VfsFat = _o.VfsFat
VfsLfs2 = _o.VfsLfs2


def uname():
    return vb_sys._attrtuple(vbhw.prof().get("uname") or [["sysname", "esp32"]])


def sync():
    pass   # LittleFS on the emulated flash writes through


def dupterm(stream_object, index=0):
    # kept, not attached: the emulated console is the host's pty
    prev, _term[0] = _term[0], stream_object
    return prev


def dupterm_notify(obj_in):
    pass
