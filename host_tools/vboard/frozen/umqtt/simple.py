# sensorpub's own stand-in for micropython-lib's umqtt.simple (MQTT 3.1.1 client), written for this
# project; the virtual board freezes it where a real ESP32 has umqtt.simple in its firmware. It plays
# the release named by VERSION in the optional sibling module umqtt/standin_version.py (1.4.0, 1.6.0,
# 1.7.0 or 1.8.0; 1.8.0 without it): that release's API (methods are chosen as the class is created)
# and the same calls on the socket and ssl context, in the same order. As with the real client:
# topics, client id, will, user and password reach sock.write() as given (a str stays a str); fixed
# headers and packet ids go out as sock.write(bytearray, n); every read of a new packet is followed
# by setblocking(True); reading b"" (peer closed) raises OSError(-1); connect() calls settimeout()
# on the plain socket (1.6.0+) and closes an old socket first (1.8.0); QoS 2 is not implemented.
import socket
import struct

try:
    from .standin_version import VERSION
except ImportError:
    VERSION = "1.8.0"
if VERSION not in ("1.4.0", "1.6.0", "1.7.0", "1.8.0"):
    raise ValueError("umqtt.simple stand-in: cannot play version " + repr(VERSION))
_REL = tuple(int(part) for part in VERSION.split("."))


class MQTTException(Exception):
    pass


def _put_length(buf, n):
    # MQTT remaining length into buf from index 1; returns the index of its last byte
    at = 1
    while n > 0x7F:
        buf[at] = (n & 0x7F) | 0x80
        n >>= 7
        at += 1
    buf[at] = n
    return at


class MQTTClient:
    def _init(self, client_id, server, port, user, password, keepalive, ssl):
        self.client_id, self.server, self.keepalive, self.ssl = client_id, server, keepalive, ssl
        self.port = port if port else (8883 if ssl else 1883)
        self.user, self.pswd = user, password
        self.sock = self.cb = self.lw_topic = self.lw_msg = None
        self.pid = self.lw_qos = 0
        self.lw_retain = False

    if _REL < (1, 6, 0):
        def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0, ssl=None):
            self._init(client_id, server, port, user, password, keepalive, ssl)

        def connect(self, clean_session=True):
            return self._connect(clean_session, False, None)
    else:
        # 1.6.0 brought back ssl=True with ssl_params (legacy ssl.wrap_socket) beside an SSLContext
        def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0, ssl=None,
                     ssl_params={}):
            self._init(client_id, server, port, user, password, keepalive, ssl)
            self.ssl_params = ssl_params

        def connect(self, clean_session=True, timeout=None):
            if _REL >= (1, 8, 0) and self.sock:  # 1.8.0 closes the socket of an earlier connect()
                self.sock.close()
            return self._connect(clean_session, True, timeout)

    def _connect(self, clean_session, set_timeout, timeout):
        self.sock = socket.socket()
        if set_timeout:
            self.sock.settimeout(timeout)
        self.sock.connect(socket.getaddrinfo(self.server, self.port)[0][-1])
        if self.ssl is True and _REL >= (1, 6, 0):
            import ssl
            self.sock = ssl.wrap_socket(self.sock, **self.ssl_params)
        elif self.ssl:
            self.sock = self.ssl.wrap_socket(self.sock, server_hostname=self.server)
        # the fixed header is written with one byte more: the protocol name length's high byte (0)
        fixed = bytearray(b"\x10\0\0\0\0\0")
        variable = bytearray(b"\x04MQTT\x04\x02\0\0")
        flags = clean_session << 1
        size = 12 + len(self.client_id)
        if self.user:
            size += 4 + len(self.user) + len(self.pswd)
            flags |= 0xC0
        if self.keepalive:
            assert self.keepalive < 65536
            struct.pack_into("!H", variable, 7, self.keepalive)
        if self.lw_topic:
            size += 4 + len(self.lw_topic) + len(self.lw_msg)
            flags |= 0x04 | (self.lw_qos & 3) << 3 | self.lw_retain << 5
        variable[6] = flags
        self.sock.write(fixed, _put_length(fixed, size) + 2)
        self.sock.write(variable)
        fields = [self.client_id]
        if self.lw_topic:
            fields += [self.lw_topic, self.lw_msg]
        if self.user:
            fields += [self.user, self.pswd]
        for field in fields:
            self._send_str(field)
        connack = self.sock.read(4)
        assert connack[0] == 0x20 and connack[1] == 0x02
        if connack[3] != 0:
            raise MQTTException(connack[3])
        return connack[2] & 1

    def _send_str(self, s):
        self.sock.write(struct.pack("!H", len(s)))
        self.sock.write(s)

    def _read_u16(self):
        b = self.sock.read(2)
        return b[0] << 8 | b[1]

    def _recv_len(self):
        n = shift = 0
        while True:
            b = self.sock.read(1)[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
            shift += 7

    def set_callback(self, f):
        self.cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        assert 0 <= qos <= 2 and topic
        self.lw_topic, self.lw_msg, self.lw_qos, self.lw_retain = topic, msg, qos, retain

    def disconnect(self):
        self.sock.write(b"\xe0\0")
        self.sock.close()

    def ping(self):
        self.sock.write(b"\xc0\0")

    def publish(self, topic, msg, retain=False, qos=0):
        head = bytearray(b"\x30\0\0\0")
        head[0] |= qos << 1 | retain
        size = 2 + len(topic) + len(msg) + (2 if qos > 0 else 0)
        assert size < 2097152
        self.sock.write(head, _put_length(head, size) + 1)
        self._send_str(topic)
        if qos > 0:
            self.pid = pid = self.pid + 1
            struct.pack_into("!H", head, 0, pid)  # the header buffer is reused for the packet id
            self.sock.write(head, 2)
        self.sock.write(msg)
        if qos == 1:
            while True:
                if self.wait_msg() == 0x40:  # PUBACK: its length byte, then the packet id
                    n = self.sock.read(1)
                    assert n == b"\x02"
                    if self._read_u16() == pid:
                        return
        else:
            assert qos != 2  # QoS 2 is not implemented

    def _request(self, kind, topic, qos):
        # SUBSCRIBE (0x82, answered by a 4-byte SUBACK 0x90) or UNSUBSCRIBE (0xA2, 3-byte UNSUBACK 0xB0)
        sub = kind == 0x82
        self.pid = pid = self.pid + 1
        head = bytearray((kind, 0, 0, 0))
        size = 4 + len(topic) + (1 if sub else 0)
        if _REL < (1, 8, 0):  # one length byte and the packet id, written as one 4-byte buffer
            struct.pack_into("!BH", head, 1, size, pid)
            self.sock.write(head)
        else:
            self.sock.write(head, _put_length(head, size) + 1)
            struct.pack_into("!H", head, 0, pid)
            self.sock.write(head, 2)
        self._send_str(topic)
        if sub:
            self.sock.write(qos.to_bytes(1, "little") if _REL < (1, 8, 0) else bytes((qos,)))
        while True:
            if self.wait_msg() == (0x90 if sub else 0xB0):
                ack = self.sock.read(4 if sub else 3)
                assert (ack[1] << 8 | ack[2]) == (pid if _REL >= (1, 8, 0) else pid & 0xFFFF)
                if sub and ack[3] == 0x80:
                    raise MQTTException(ack[3])
                return

    def subscribe(self, topic, qos=0):
        assert self.cb is not None, "Subscribe callback is not set"
        self._request(0x82, topic, qos)

    if _REL >= (1, 7, 0):
        def unsubscribe(self, topic):
            self._request(0xA2, topic, 0)

    def wait_msg(self):
        # One packet: None if nothing was pending or a PINGRESP; a PUBLISH goes to the callback; any
        # other packet's opcode is returned and its caller reads the rest (PUBACK, SUBACK...).
        first = self.sock.read(1)
        self.sock.setblocking(True)
        if first is None:
            return None
        if first == b"":
            raise OSError(-1)
        if first == b"\xd0":  # PINGRESP
            n = self.sock.read(1)[0]
            assert n == 0
            return None
        op = first[0]
        if op & 0xF0 != 0x30:
            return op
        size = self._recv_len()
        tlen = self._read_u16()
        topic = self.sock.read(tlen)
        size -= tlen + 2
        if op & 6:
            pid = self._read_u16()
            size -= 2
        msg = self.sock.read(size)
        self.cb(topic, msg)
        if op & 6 == 2:
            self.sock.write(bytearray((0x40, 2, pid >> 8, pid & 0xFF)))  # PUBACK
        else:
            assert op & 6 != 4  # QoS 2 is not implemented
        return op

    def check_msg(self):
        self.sock.setblocking(False)
        return self.wait_msg()
