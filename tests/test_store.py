"""The bridge's store on SQLite and on a real PostgreSQL server: a reading once per (device, seq), handled
flags, last status per device; the default file private and in WAL mode; a bad --store is one line."""
import json
import os
import sqlite3
import stat

import pytest

from host_tools.errors import CommandError
from host_tools.store import open_store, store_path
from pg import PASSWORD, pg_server, pg_url  # noqa: F401  (fixtures)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, home):
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    s = open_store(url, "demo")
    yield s
    s.close()


def reading(seq, dev="dev1", ts=1795459200.5):
    return dict(device_id=dev, seq=seq, ts=ts, received_at=1795459201.25, status="ok",
                payload=json.dumps({"device_id": dev, "seq": seq, "ts": ts, "uptime_s": 1, "status": "ok", "t": 1}))


def test_a_reading_is_stored_once_and_read_back_in_order(store):
    assert store.add(**reading(5)) is True
    assert store.add(**reading(3, ts=None)) is True
    assert store.add(**reading(1, dev="dev0")) is True
    again = dict(reading(5), payload="{}", status="sensor_error")
    assert store.add(**again) is False                  # the same (device, seq): nothing changes
    rows = store.readings()
    assert [(r["device_id"], r["seq"]) for r in rows] == [("dev0", 1), ("dev1", 3), ("dev1", 5)]
    assert rows[2] == reading(5)                         # every column back as written, the first copy kept
    assert rows[1]["ts"] is None
    assert set(rows[0]) == {"device_id", "seq", "ts", "received_at", "status", "payload"}
    assert [r["seq"] for r in store.readings("dev1")] == [3, 5]
    assert store.readings("nobody") == []
    assert store.add(**reading(6)) is True               # a duplicate did not spoil the connection
    assert store.devices() == ["dev0", "dev1"]


def test_handled_flag(store):
    assert store.handled("dev1", 1) is None              # not stored
    store.add(**reading(1))
    store.add(**reading(2))
    assert store.handled("dev1", 1) is False
    store.mark_handled("dev1", 1)
    assert (store.handled("dev1", 1), store.handled("dev1", 2)) == (True, False)
    store.add(**reading(1))                              # a redelivery keeps the flag
    assert store.handled("dev1", 1) is True


def test_last_status_per_device(store):
    assert store.statuses() == {}
    store.set_status("dev1", "online", '{"state":"online","reset":"hard"}', 10.0)
    store.set_status("dev2", "online", '{"state":"online"}', 11.0)
    store.set_status("dev1", "offline", '{"state":"offline","reason":"lost"}', 12.5)
    assert store.statuses() == {
        # the last online document is kept beside the last one: an offline device's firmware stays known
        "dev1": {"state": "offline", "doc": '{"state":"offline","reason":"lost"}',
                 "online_doc": '{"state":"online","reset":"hard"}', "updated_at": 12.5},
        "dev2": {"state": "online", "doc": '{"state":"online"}', "online_doc": '{"state":"online"}', "updated_at": 11.0},
    }
    assert store.devices() == ["dev1", "dev2"]           # a device with a status and no reading yet counts


def test_the_primary_key_itself_refuses_a_duplicate(store):
    # negative control: deduplication is the database's constraint, not a check in Python a race could pass
    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError
    store.add(**reading(7))
    with pytest.raises(IntegrityError):
        with store.engine.begin() as c:
            c.execute(insert(store.readings_t).values(**reading(7)))
    assert len(store.readings()) == 1


def test_reopening_keeps_the_rows(home, request):
    for url in (None, request.getfixturevalue("pg_url")):
        s = open_store(url, "demo")
        s.add(**reading(1))
        s.close()
        s = open_store(url, "demo")                      # tables exist: created only when missing
        assert [r["seq"] for r in s.readings()] == [1] and s.add(**reading(1)) is False
        s.close()


def test_the_default_store_is_private_and_in_wal_mode(home):
    s = open_store(None, "demo")
    s.add(**reading(1))
    path = store_path("demo")
    assert path == home / "data" / "demo" / "readings.sqlite" and path.exists()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(home / "data").st_mode) == 0o700
    with sqlite3.connect(path) as c:                     # another process reading it, as `status` does
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("SELECT seq FROM readings").fetchall() == [(1,)]
    s.close()


def test_sqlite_url_and_plain_path(home):
    for url, path in (("sqlite:///" + str(home / "a.db"), home / "a.db"), ("b.sqlite", home / "b.sqlite")):
        s = open_store(url, "demo")
        assert s.add(**reading(1))
        s.close()
        assert path.exists() and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not store_path("demo").exists()


@pytest.mark.parametrize("url,text", [
    ("mysql://u:hunter2@db/x", "is not a store: use postgresql://"),
    ("sqlite://", "is not a store"),
    ("", "is not a store"),
    ("postgresql://u:hunter2@127.0.0.1:notaport/x", "is not a valid URL"),
    ("/no/such/dir/r.sqlite", "directory /no/such/dir does not exist"),
])
def test_a_bad_store_is_one_line(home, url, text):
    with pytest.raises(CommandError) as e:
        open_store(url, "demo")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("--store") and text in msg, msg
    assert "hunter2" not in msg


def test_an_unreachable_server_is_one_line_without_the_password(home):
    from conftest import free_port
    with pytest.raises(CommandError) as e:
        open_store(f"postgresql://u:hunter2@127.0.0.1:{free_port()}/x", "demo")
    msg = str(e.value)
    assert "\n" not in msg and "Connection refused" in msg and "u:***@127.0.0.1" in msg, msg
    assert "hunter2" not in msg


def test_a_wrong_password_is_one_line_without_either_password(home, pg_server):  # noqa: F811
    with pytest.raises(CommandError) as e:
        open_store(pg_server.url(password="wrong-pw-7"), "demo")
    msg = str(e.value)
    assert "\n" not in msg and "password authentication failed" in msg, msg
    assert "wrong-pw-7" not in msg and PASSWORD not in msg


def test_no_postgresql_server_binaries_is_a_failure_not_a_skip(monkeypatch):
    import pg
    monkeypatch.setattr(pg.glob, "glob", lambda pattern: [])
    with pytest.raises(pytest.fail.Exception, match=r"server binaries not found .*apt-get install postgresql"):
        pg.bin_dir()
