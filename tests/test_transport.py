"""Each snippet the host runs on a board (host_tools/transport.py), run on a virtual board through real mpremote
and checked against what mpremote's own commands and CPython's hashlib say."""
import hashlib

import pytest

from board_helpers import mpremote
from host_tools.transport import Device
from host_tools.vboard import VBoard


@pytest.fixture
def dev(home):
    vb = VBoard("tr0")
    vb.start(erase=True)
    d = Device("vboard:tr0")
    yield d
    d.close()
    vb.stop()


def test_mkdirs_makes_every_parent_and_accepts_existing_ones(dev):
    dev.mkdirs("/a/b/c")
    dev.mkdirs("/a/b")  # again: no error
    assert dev.eval("[__import__('os').stat(p)[0] & 0x4000 for p in ('/a', '/a/b', '/a/b/c')]") == [0x4000] * 3


def test_file_info_reads_back_size_and_sha256_and_leaves_out_missing_files(dev):
    data = bytes(range(256)) * 7 + b"tail"  # not a multiple of the 512-byte read
    dev.write_file("/x.bin", data)
    dev.write_file("/empty", b"")
    info = dev.file_info(["/x.bin", "/empty", "/nope"])
    assert info == {"/x.bin": (len(data), hashlib.sha256(data).hexdigest()),
                    "/empty": (0, hashlib.sha256(b"").hexdigest())}


def test_remove_deletes_what_exists_and_skips_what_does_not(dev):
    for name in ("/r1", "/r2", "/keep"):
        dev.write_file(name, b"x")
    dev.remove(["/r1", "/missing", "/r2"])
    names = dev.eval("__import__('os').listdir('/')")
    assert "r1" not in names and "r2" not in names and "keep" in names, names


def test_free_bytes_falls_by_what_is_written(dev):
    before = dev.free_bytes()
    dev.write_file("/big", bytes(64 * 1024))
    after = dev.free_bytes()
    assert 64 * 1024 <= before - after <= 64 * 1024 + 3 * 4096, (before, after)  # data + LittleFS metadata blocks


def test_reset_restarts_the_board(dev, tmp_path):
    dev.write_file("/main.py", b"print('MAIN after reset')\n")
    log = VBoard("tr0").console_log
    start = log.stat().st_size
    dev.reset()
    r = mpremote(VBoard("tr0").port, "exec", "print('back')")  # the board answers again after its reset
    assert r.returncode == 0 and "back" in r.stdout, r.stderr
    assert "MAIN after reset" in log.read_bytes()[start:].decode(errors="replace")
