"""`sensorpub bridge`: every reading from the broker into a store, acknowledged only once it is safe there.

paho-mqtt, MQTT 3.1.1 over TLS, a persistent session (clean_session False, QoS 1) and manual acknowledgement.
on_message, on the network thread, only queues a message. One worker thread takes them in arrival order:
validates (verify.validate), stores (a (device_id, seq) already stored is skipped), runs the handler until it
succeeds and marks the row handled, and only then sends the PUBACK. So a bridge stopped at any moment, even by
SIGKILL, loses nothing (the broker delivers what was not acknowledged again, to the same session) and stores
nothing twice (the table's primary key); PUBACKs go out in order, and the network loop keeps running while a
handler is retried.
"""
import queue
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, Optional

from .contract import ID_FIELD, ROOT, SEQ_FIELD, STATUS, STATUS_FIELD, STATUS_LEAF, TELEMETRY, TS_FIELD
from .errors import CommandError
from .store import Store
from .verify import EXIT_CONNECT, Endpoint, connect, describe, parse_status, tls_context, validate

RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 30                 # paho's own reconnect back-off
RETRY_FIRST_S, RETRY_MAX_S, RETRY_JITTER_S = 0.25, 30.0, 0.25  # a failing handler or store: 0.25, 0.5, 1 ... 30 s
STOP_WAIT_S = 15.0  # on stop, how long the worker may take to finish the reading in hand (a webhook's timeout)


@dataclass
class Counts:
    stored: int = 0           # readings written
    duplicates: int = 0       # delivered again, already stored: skipped
    malformed: int = 0        # refused by validate(), acknowledged, never stored
    handled: int = 0          # readings the handler took
    handler_retries: int = 0  # handler failures retried
    store_retries: int = 0    # store failures (database unreachable) retried
    statuses: int = 0         # status documents that changed a device's last status


@dataclass
class _Message:
    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool
    received_at: float  # host epoch seconds
    gen: int            # the connection it came on


class _Stopped(Exception):
    """The bridge is stopping while a handler or the store was being retried: leave the message unacknowledged."""


class Bridge:
    def __init__(self, ep: Endpoint, open_store: Callable[[], Store],
                 handler: Optional[Callable[[dict], object]] = None,
                 on_line: Callable[[str], None] = print, log: Callable[[str], None] = print):
        """`open_store()` is called once the broker accepted the connection: a bridge that cannot connect
        leaves no store behind (`sensorpub status` reads a store's existence as 'a bridge ran')."""
        self.ep, self.open_store, self.handler = ep, open_store, handler
        self.store: Store = None  # type: ignore[assignment]  # opened by run()
        self.on_line, self.log = on_line, log
        self.counts = Counts()
        self.stopping = threading.Event()
        self._queue: "queue.Queue[_Message]" = queue.Queue()
        self._lock = threading.Lock()
        self._pending = 0                # queued or in the worker's hands
        self._quiet_since = time.monotonic()
        self._gen = 0                    # +1 on each CONNACK: a PUBACK only goes back on the connection it came on
        self._connected = False
        self._ever_connected = self._ever_subscribed = self._resumed = False
        self._fatal: Optional[str] = None
        self._crash: Optional[BaseException] = None
        self._docs: Dict[str, str] = {}  # device -> last status document stored

    def stop(self) -> None:
        """Ask run() to return (SIGINT/SIGTERM): the reading in hand is finished or left unacknowledged."""
        self.stopping.set()

    def run(self, once_idle: Optional[float] = None) -> Counts:
        """Bridge until stop(), or until `once_idle` seconds passed with nothing received and nothing in hand."""
        import paho.mqtt.client as mqtt
        ctx = tls_context(self.ep)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.ep.client_id, clean_session=False,
                             protocol=mqtt.MQTTv311, manual_ack=True)
        client.tls_set_context(ctx)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        connect(client, self.ep)  # the TCP and TLS handshakes; CONNECT goes out with the loop
        try:
            self.store = self.open_store()
            self._docs = {dev: st["doc"] for dev, st in self.store.statuses().items()}
        except BaseException:
            self.stopping.set()
            client.disconnect()
            raise
        worker = threading.Thread(target=self._work, args=(client,), name="bridge-worker", daemon=True)
        worker.start()
        client.loop_start()
        try:
            while not self.stopping.wait(0.1):
                if once_idle is not None and self._idle_for() >= once_idle:
                    break
        finally:
            self.stopping.set()
            worker.join(STOP_WAIT_S)
            client.disconnect()
            client.loop_stop()
            self.store.close()
        if self._fatal:
            raise CommandError(self._fatal, EXIT_CONNECT)
        if self._crash:
            raise self._crash
        return self.counts

    def summary(self) -> dict:
        return dict(asdict(self.counts), store=self.store.where)

    # --- network thread -------------------------------------------------------------------------------------
    def _on_connect(self, client, _ud, flags, reason, _props):
        if reason.is_failure:
            why = f"broker {self.ep.host}:{self.ep.port} refused {self.ep.client_id}: {reason}"
            if not self._ever_connected:
                self._fatal = why
                self.stopping.set()
            else:
                self.log(why + "; trying again")
            return
        self._gen += 1
        self._connected = self._ever_connected = True
        self._resumed = flags.session_present
        # every time, even with a session present: a bridge killed before its SUBACK has a session without them
        client.subscribe([(TELEMETRY, 1), (STATUS, 1)])

    def _on_subscribe(self, _client, _ud, _mid, reasons, _props):
        refused = [t for t, r in zip((TELEMETRY, STATUS), reasons) if r.is_failure]
        if refused:
            why = (f"broker {self.ep.host}:{self.ep.port} refused {self.ep.client_id} the topics "
                   f"{', '.join(refused)}: is it a verifier identity of this fleet?")
            if not self._ever_subscribed:
                self._fatal = why
                self.stopping.set()
            else:
                self.log(why)
            return
        self._ever_subscribed = True
        with self._lock:
            self._quiet_since = time.monotonic()  # --once-idle counts from here
        self.log(f"subscribed on {self.ep.host}:{self.ep.port} as {self.ep.client_id}"
                 + (" (session resumed)" if self._resumed else " (new session)"))

    def _on_disconnect(self, _client, _ud, _flags, reason, _props):
        self._connected = False
        if not self.stopping.is_set():
            self.log(f"lost the broker ({reason}): reconnecting")

    def _on_message(self, _client, _ud, m):
        try:
            topic = m.topic
        except UnicodeDecodeError:
            topic = "(a topic that is not UTF-8)"
        with self._lock:
            self._pending += 1
        self._queue.put(_Message(topic, m.payload, m.mid, m.qos, m.retain, time.time(), self._gen))

    def _idle_for(self) -> float:
        with self._lock:
            return 0.0 if self._pending else time.monotonic() - self._quiet_since

    # --- worker thread --------------------------------------------------------------------------------------
    def _work(self, client) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    m = self._queue.get(timeout=0.1)
                except queue.Empty:
                    continue
                try:
                    if self._take(m):
                        self._ack(client, m)
                except _Stopped:
                    return
                finally:
                    with self._lock:
                        self._pending -= 1
                        self._quiet_since = time.monotonic()
        except BaseException as e:  # a bug: stop, and let run() raise it
            self._crash = e
            self.stopping.set()

    def _ack(self, client, m: _Message) -> None:
        # a message from an earlier connection is not acknowledged on this one: the broker sends it again (same
        # session), and it is taken then, as a duplicate. (A reconnect between this check and the ack is harmless:
        # the worker is in order, so that packet id still names this same message.)
        if m.qos and m.gen == self._gen and self._connected:
            client.ack(m.mid, m.qos)

    def _take(self, m: _Message) -> bool:
        """Store (and handle) one message; True when it may be acknowledged."""
        parts = m.topic.split("/")
        if len(parts) == 3 and parts[0] == ROOT and parts[2] == STATUS_LEAF:
            self._status(parts[1], m)
            return True
        msg, why = validate(m.topic, m.payload)
        if msg is not None:
            try:
                text = m.payload.decode("utf-8")
            except UnicodeDecodeError:  # json.loads took UTF-16 or -32
                msg, why = None, "not UTF-8"
        if msg is None:
            self.counts.malformed += 1
            self.log(describe("malformed", m.topic, None, why or ""))
            return True
        dev, seq = msg[ID_FIELD], msg[SEQ_FIELD]
        ts = None if msg[TS_FIELD] is None else float(msg[TS_FIELD])
        added = self._db(lambda: self.store.add(dev, seq, ts, m.received_at, msg[STATUS_FIELD], text))
        if added:
            self.counts.stored += 1
            self.on_line(describe("valid", m.topic, msg, ""))
        else:
            self.counts.duplicates += 1
        if self.handler is None or (not added and self._db(lambda: self.store.handled(dev, seq))):
            return True
        self._retry(lambda: self.handler(dict(msg)), lambda e: f"handler failed on {dev} seq={seq}: {_line(e)}",
                    "handler_retries", (Exception,))
        self._db(lambda: self.store.mark_handled(dev, seq))
        self.counts.handled += 1
        return True

    def _status(self, dev: str, m: _Message) -> None:
        text = m.payload.decode("utf-8", "replace")
        if not text or self._docs.get(dev) == text:  # a cleared retained message; the same document sent again
            return
        state, _note = parse_status(m.payload)
        self._db(lambda: self.store.set_status(dev, state, text, m.received_at))
        self._docs[dev] = text
        self.counts.statuses += 1
        self.on_line(describe("status", m.topic, None, _note))

    def _db(self, fn):
        """A store call, retried while the database cannot be reached (never skipped)."""
        from sqlalchemy.exc import InterfaceError, OperationalError
        return self._retry(fn, lambda e: f"store {self.store.where}: {_line(getattr(e, 'orig', None) or e)}",
                           "store_retries", (OperationalError, InterfaceError))

    def _sleep(self, seconds: float) -> None:
        self.stopping.wait(seconds)  # a stop ends the wait at once

    def _retry(self, fn, describe_failure, counter: str, errors: tuple):
        from tenacity import RetryError, Retrying, retry_if_exception_type, wait_exponential_jitter

        def before_sleep(rs):
            setattr(self.counts, counter, getattr(self.counts, counter) + 1)
            self.log(f"{describe_failure(rs.outcome.exception())} (attempt {rs.attempt_number}); "
                     f"retrying in {rs.upcoming_sleep:.1f} s")

        try:
            return Retrying(sleep=self._sleep, stop=lambda _rs: self.stopping.is_set(),
                            wait=wait_exponential_jitter(multiplier=RETRY_FIRST_S, max=RETRY_MAX_S,
                                                         jitter=RETRY_JITTER_S),
                            retry=retry_if_exception_type(errors), before_sleep=before_sleep)(fn)
        except RetryError:
            raise _Stopped() from None


def _line(e: BaseException) -> str:
    """An exception on one line, with its type unless it speaks for itself."""
    from .handlers import WebhookError
    text = " ".join(str(e).split())
    return text if isinstance(e, WebhookError) else f"{type(e).__name__}: {text}"
