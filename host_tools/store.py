"""Where the bridge keeps readings: SQLite (default, one file per fleet) or PostgreSQL, with SQLAlchemy Core.

Two tables. `readings`: one row per (device_id, seq), the raw JSON as received, whether a handler took it.
`device_status`: each device's last status document. Adding a reading twice is a no-op that says so (an
INSERT ... ON CONFLICT DO NOTHING), so a message the broker delivers again is never stored twice.
`sensorpub status` and `sensorpub report` read the same tables through this module.
"""
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .contract import ONLINE
from .errors import CommandError
from .paths import check_name, home

FORMS = "postgresql://USER:PASSWORD@HOST[:PORT]/DB, sqlite:///PATH or a file path"


def store_path(fleet: str) -> Path:
    """The default SQLite file of a fleet: data/<fleet>/readings.sqlite (it exists once a bridge ran)."""
    return home() / "data" / check_name("fleet", fleet) / "readings.sqlite"


def open_store(url: Optional[str], fleet: str) -> "Store":
    """The store `--store URL` names (None: the fleet's SQLite file), tables created when missing."""
    kind, where = check_url(url)
    if url is None:
        path = store_path(fleet)
        for d in (path.parent.parent, path.parent):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(d, 0o700)
        return _sqlite(path, private=True)
    return _postgresql(where) if kind == "postgresql" else _sqlite(Path(where).expanduser())


def check_url(url: Optional[str]) -> Tuple[str, str]:
    """('sqlite', path) or ('postgresql', url) for a --store value, touching nothing; a bad one is a CommandError."""
    if url is None:
        return "sqlite", ""
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        return "postgresql", url
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return "sqlite", url[len("sqlite:///"):]
    if url and "://" not in url and not url.startswith("sqlite:"):
        return "sqlite", url
    raise CommandError(f"--store {mask(url)!r} is not a store: use {FORMS}")


def mask(url: str) -> str:
    """A URL as it may be shown: any password replaced by ***."""
    from sqlalchemy.engine import make_url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not parseable: hide whatever sits between '://user:' and '@'
        head, sep, rest = url.partition("://")
        creds, at, tail = rest.rpartition("@")
        return head + sep + (creds.split(":", 1)[0] + ":***" + at if at and ":" in creds else creds + at) + tail


def _sqlite(path: Path, private: bool = False) -> "Store":
    from sqlalchemy import create_engine, event
    if path.is_dir():
        raise CommandError(f"--store {path} is a directory: name a file, e.g. {path / 'readings.sqlite'}")
    if not path.parent.is_dir():
        raise CommandError(f"--store {path}: directory {path.parent} does not exist: create it first")
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))  # private readings from the start
        if private:
            os.chmod(path, 0o600)
    except OSError as e:
        raise CommandError(f"--store {path}: cannot open it: {e.strerror}") from None
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")   # readers (status, report) never block the bridge
        cur.execute("PRAGMA synchronous=FULL")   # a commit survives a power cut: the broker was told so
        cur.close()

    return Store(engine, str(path))


def _postgresql(url: str) -> "Store":
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    try:
        u = make_url(url).set(drivername="postgresql+psycopg")
    except (ArgumentError, ValueError) as e:
        raise CommandError(f"--store {mask(url)!r} is not a valid URL ({e}): use {FORMS}") from None
    engine = create_engine(u, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    return Store(engine, mask(url), secret=u.password)


class Store:
    """Readings and device status in one database. Every call is its own committed transaction."""

    def __init__(self, engine, where: str, secret: Optional[str] = None):
        from sqlalchemy import (BigInteger, Boolean, Column, Double, MetaData, Table, Text, false)
        self.engine, self.where, self._secret = engine, where, secret
        md = MetaData()
        self.readings_t = Table(
            "readings", md,
            Column("device_id", Text, primary_key=True),
            Column("seq", BigInteger, primary_key=True, autoincrement=False),
            Column("ts", Double, nullable=True),            # device epoch seconds; None: no clock yet
            Column("received_at", Double, nullable=False),  # host epoch seconds, when the bridge got it
            Column("status", Text, nullable=False),         # ok | sensor_error
            Column("payload", Text, nullable=False),        # the raw JSON
            Column("handled", Boolean, nullable=False, server_default=false()))
        self.status_t = Table(
            "device_status", md,
            Column("device_id", Text, primary_key=True),
            Column("state", Text, nullable=False),
            Column("doc", Text, nullable=False),
            Column("online_doc", Text, nullable=True),  # the last 'online' document: firmware, board, boots
            Column("updated_at", Double, nullable=False))
        self._run(lambda: self._create(md))

    def _create(self, md) -> None:
        from sqlalchemy.exc import IntegrityError, ProgrammingError
        try:
            md.create_all(self.engine)
        except (IntegrityError, ProgrammingError):  # another process created them at the same moment: they exist now
            md.create_all(self.engine)

    def _run(self, fn):
        """fn() with a database that cannot be reached (or refuses us) turned into one line."""
        from sqlalchemy.exc import OperationalError
        try:
            return fn()
        except OperationalError as e:
            raise CommandError(f"--store {self.where}: {self._why(e)}") from None

    def _why(self, e) -> str:
        text = " ".join(str(getattr(e, "orig", None) or e).split())  # the driver's words, on one line
        if self._secret:
            text = text.replace(self._secret, "***")
        return text

    def _insert(self, table):
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(table)

    def add(self, device_id: str, seq: int, ts: Optional[float], received_at: float, status: str,
            payload: str) -> bool:
        """Store a reading; False (and nothing changed) when (device_id, seq) is already there."""
        stmt = self._insert(self.readings_t).values(
            device_id=device_id, seq=seq, ts=ts, received_at=received_at, status=status, payload=payload,
        ).on_conflict_do_nothing(index_elements=["device_id", "seq"]).returning(self.readings_t.c.seq)
        with self.engine.begin() as c:
            return c.execute(stmt).first() is not None  # a row comes back only when one was inserted

    def mark_handled(self, device_id: str, seq: int) -> None:
        from sqlalchemy import update
        t = self.readings_t
        with self.engine.begin() as c:
            c.execute(update(t).where(t.c.device_id == device_id, t.c.seq == seq).values(handled=True))

    def handled(self, device_id: str, seq: int) -> Optional[bool]:
        """Whether a handler took the reading; None when it is not stored."""
        from sqlalchemy import select
        t = self.readings_t
        with self.engine.connect() as c:
            v = c.execute(select(t.c.handled).where(t.c.device_id == device_id, t.c.seq == seq)).scalar()
        return None if v is None else bool(v)

    def set_status(self, device_id: str, state: str, doc: str, received_at: float) -> None:
        """Keep the device's last status document (the retained one, or a newer one), and its last 'online' one:
        an offline device's firmware and board are still known."""
        from sqlalchemy import func
        t = self.status_t
        online = doc if state == ONLINE else None
        ins = self._insert(t).values(device_id=device_id, state=state, doc=doc, online_doc=online,
                                     updated_at=received_at)
        stmt = ins.on_conflict_do_update(index_elements=["device_id"],
                                         set_={"state": ins.excluded.state, "doc": ins.excluded.doc,
                                               "online_doc": func.coalesce(ins.excluded.online_doc, t.c.online_doc),
                                               "updated_at": ins.excluded.updated_at})
        with self.engine.begin() as c:
            c.execute(stmt)

    def devices(self) -> List[str]:
        """Every device with a reading or a status, sorted."""
        from sqlalchemy import select, union
        q = union(select(self.readings_t.c.device_id), select(self.status_t.c.device_id))
        with self.engine.connect() as c:
            return sorted(r[0] for r in c.execute(q))

    def readings(self, device_id: Optional[str] = None) -> List[dict]:
        """Stored readings (device_id, seq, ts, received_at, status, payload), by device, then seq."""
        from sqlalchemy import select
        t = self.readings_t
        q = select(t.c.device_id, t.c.seq, t.c.ts, t.c.received_at, t.c.status, t.c.payload)
        if device_id is not None:
            q = q.where(t.c.device_id == device_id)
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q.order_by(t.c.device_id, t.c.seq))]

    def statuses(self) -> Dict[str, dict]:
        """device_id -> {"state", "doc" (the raw JSON), "online_doc" (the last online one, or None),
        "updated_at" (host epoch seconds)}."""
        from sqlalchemy import select
        t = self.status_t
        with self.engine.connect() as c:
            return {r.device_id: {"state": r.state, "doc": r.doc, "online_doc": r.online_doc,
                                  "updated_at": r.updated_at}
                    for r in c.execute(select(t))}

    def close(self) -> None:
        self.engine.dispose()
