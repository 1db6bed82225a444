# sensorpub's stand-in for umqtt.simple (MicroPython, MQTT 3.1.1 client). Written for this project
# with the same API and behaviour the firmware relies on: blocking reads, OSError when the socket
# fails or closes, MQTTException when the CONNACK refuses. Used on the virtual board only; a real
# ESP32 has umqtt.simple frozen in its firmware.
import socket
import struct


class MQTTException(Exception):
    pass


class MQTTClient:
    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0, ssl=None):
        self.client_id = client_id
        self.server = server
        self.port = port or (8883 if ssl else 1883)
        self.user = user
        self.pswd = password
        self.keepalive = keepalive
        self.ssl = ssl
        self.sock = None
        self.pid = 0
        self.cb = None
        self.lw_topic = None
        self.lw_msg = None
        self.lw_qos = 0
        self.lw_retain = False

    def _send_str(self, s):
        if isinstance(s, str):
            s = s.encode()
        self.sock.write(struct.pack("!H", len(s)))
        self.sock.write(s)

    def _remaining(self, n):
        # MQTT variable-length "remaining length"
        out = bytearray()
        while True:
            b = n & 0x7F
            n >>= 7
            out.append(b | 0x80 if n else b)
            if not n:
                return out

    def _recv_len(self):
        n = 0
        shift = 0
        while True:
            b = self.sock.read(1)[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
            shift += 7

    def _read_exact(self, n):
        b = self.sock.read(n)
        if b is None or len(b) < n:
            raise OSError(-1)
        return b

    def set_callback(self, f):
        self.cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        assert 0 <= qos <= 2
        assert topic
        self.lw_topic = topic
        self.lw_msg = msg
        self.lw_qos = qos
        self.lw_retain = retain

    def connect(self, clean_session=True, timeout=None):
        self.sock = socket.socket()
        self.sock.settimeout(timeout)
        addr = socket.getaddrinfo(self.server, self.port)[0][-1]
        self.sock.connect(addr)
        if self.ssl:
            self.sock = self.ssl.wrap_socket(self.sock, server_hostname=self.server)
        flags = 0x02 if clean_session else 0
        size = 10 + 2 + len(self.client_id)
        if self.user:
            flags |= 0x80
            size += 2 + len(self.user)
            if self.pswd:
                flags |= 0x40
                size += 2 + len(self.pswd)
        if self.lw_topic:
            flags |= 0x04 | (self.lw_qos & 3) << 3 | (0x20 if self.lw_retain else 0)
            size += 2 + len(self.lw_topic) + 2 + len(self.lw_msg)
        self.sock.write(b"\x10" + self._remaining(size))
        self.sock.write(b"\x00\x04MQTT\x04" + bytes([flags]) + struct.pack("!H", self.keepalive))
        self._send_str(self.client_id)
        if self.lw_topic:
            self._send_str(self.lw_topic)
            self._send_str(self.lw_msg)
        if self.user:
            self._send_str(self.user)
            if self.pswd:
                self._send_str(self.pswd)
        ack = self._read_exact(4)
        assert ack[0] == 0x20 and ack[1] == 0x02
        if ack[3]:
            raise MQTTException(ack[3])
        return ack[2] & 1

    def disconnect(self):
        self.sock.write(b"\xe0\x00")
        self.sock.close()

    def ping(self):
        self.sock.write(b"\xc0\x00")

    def publish(self, topic, msg, retain=False, qos=0):
        assert qos in (0, 1)  # QoS 2 is not supported, as in umqtt.simple
        if isinstance(topic, str):
            topic = topic.encode()
        size = 2 + len(topic) + len(msg) + (2 if qos else 0)
        self.sock.write(bytes([0x30 | qos << 1 | (1 if retain else 0)]) + self._remaining(size))
        self._send_str(topic)
        if qos:
            self.pid = self.pid % 65535 + 1
            self.sock.write(struct.pack("!H", self.pid))
        self.sock.write(msg)
        if qos == 1:
            while True:
                op = self.wait_msg()
                if op == 0x40:
                    sz = self._read_exact(1)[0]
                    assert sz == 2
                    pid = struct.unpack("!H", self._read_exact(2))[0]
                    if pid == self.pid:
                        return

    def subscribe(self, topic, qos=0):
        assert self.cb is not None, "subscribe needs set_callback first"
        if isinstance(topic, str):
            topic = topic.encode()
        self.pid = self.pid % 65535 + 1
        self.sock.write(b"\x82" + self._remaining(2 + 2 + len(topic) + 1) + struct.pack("!H", self.pid))
        self._send_str(topic)
        self.sock.write(bytes([qos]))
        while True:
            op = self.wait_msg()
            if op == 0x90:
                resp = self._read_exact(4)
                assert resp[1:3] == struct.pack("!H", self.pid)
                if resp[3] == 0x80:
                    raise MQTTException(resp[3])
                return

    def wait_msg(self):
        # one incoming packet; blocking. Returns None for PINGRESP/nothing, the opcode for packets the
        # caller must finish reading (PUBACK, SUBACK), and handles PUBLISH via the callback.
        res = self.sock.read(1)
        self.sock.setblocking(True)
        if res is None:
            return None
        if res == b"":
            raise OSError(-1)
        if res == b"\xd0":  # PINGRESP
            assert self._read_exact(1)[0] == 0
            return None
        op = res[0]
        if op & 0xF0 != 0x30:
            return op
        size = self._recv_len()
        tlen = struct.unpack("!H", self._read_exact(2))[0]
        topic = self._read_exact(tlen)
        size -= tlen + 2
        pid = 0
        if op & 6:
            pid = struct.unpack("!H", self._read_exact(2))[0]
            size -= 2
        msg = self._read_exact(size) if size else b""
        if self.cb:
            self.cb(topic, msg)
        if op & 6 == 2:
            self.sock.write(b"\x40\x02" + struct.pack("!H", pid))
        return op

    def check_msg(self):
        self.sock.setblocking(False)
        return self.wait_msg()
