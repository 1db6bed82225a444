# "network" of the emulated ESP32 (MicroPython), after ports/esp32/network_wlan.c and network_common.c.
# The access point is hw.json's "wifi": connect() joins it join_ms later when ssid and password match;
# a wrong password gives STAT_WRONG_PASSWORD, an absent or downed AP STAT_NO_AP_FOUND. The join and
# drops are run by vbhw's watcher thread; like the ESP32, the STA retries until disconnect().
import vbhw

_S = vbhw.S
_t = vbhw.real_time

STA_IF = 0
AP_IF = 1
MODE_11B = 1
MODE_11G = 2
MODE_11N = 4
MODE_LR = 8
AUTH_OPEN = 0
AUTH_WEP = 1
AUTH_WPA_PSK = 2
AUTH_WPA2_PSK = 3
AUTH_WPA_WPA2_PSK = 4
AUTH_WPA2_ENTERPRISE = 5
AUTH_WPA3_PSK = 6
AUTH_WPA2_WPA3_PSK = 7
AUTH_WAPI_PSK = 8
AUTH_OWE = 9
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_BEACON_TIMEOUT = 200
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
STAT_ASSOC_FAIL = 203
STAT_HANDSHAKE_TIMEOUT = 204
STAT_NO_AP_FOUND_W_COMPATIBLE_SECURITY = 210
STAT_NO_AP_FOUND_IN_AUTHMODE_THRESHOLD = 211
STAT_NO_AP_FOUND_IN_RSSI_THRESHOLD = 212
if vbhw.feature("stat_connect_fail"):
    STAT_CONNECT_FAIL = 203

_ZERO = "0.0.0.0"
_cfg = {"hostname": vbhw.prof().get("hostname", "mpy-esp32"), "dns": None, "country": "01"}


def hostname(name=None):
    if name is None:
        return _cfg["hostname"]
    if len(name) > 32:
        raise ValueError("hostname too long")
    _cfg["hostname"] = name
    return None


def country(code=None):
    if code is None:
        return _cfg["country"]
    _cfg["country"] = code
    return None


def phy_mode(mode=None):
    return MODE_11B | MODE_11G | MODE_11N if mode is None else None


def ipconfig(*args, **kwargs):
    if not kwargs:
        if len(args) != 1:
            raise TypeError("must query one param")
        if args[0] != "dns":
            raise ValueError("unexpected key")
        return _cfg["dns"] or (vbhw.dev("wifi").get("dns", _ZERO) if vbhw.link_up() else _ZERO)
    if args:
        raise TypeError("can't specify pos and kw args")
    for k in kwargs:
        if k != "dns":
            raise ValueError("unexpected key")
        _cfg["dns"] = kwargs[k]
    return None


def _mac(if_id):
    m = bytearray(_S[vbhw.MAC])
    m[5] = (m[5] + if_id) & 255   # the soft-AP MAC is the base MAC + 1
    return bytes(m)


class WLAN:
    IF_STA = 0
    IF_AP = 1
    SEC_OPEN = 0
    SEC_WEP = 1
    SEC_WPA = 2
    SEC_WPA2 = 3
    SEC_WPA_WPA2 = 4
    SEC_WPA2_ENT = 5
    SEC_WPA3 = 6
    SEC_WPA2_WPA3 = 7
    SEC_WAPI = 8
    SEC_OWE = 9
    PM_NONE = 0
    PM_PERFORMANCE = 1
    PM_POWERSAVE = 2
    _ifs = [None, None]

    def __new__(cls, interface_id=0):
        if interface_id not in (0, 1):
            raise ValueError("invalid WLAN interface identifier")
        o = cls._ifs[interface_id]
        if o is None:
            o = cls._ifs[interface_id] = object.__new__(cls)
            req = _S[vbhw.REQ] if interface_id == STA_IF else None   # restored after a soft reset
            o._if, o._active, o._static = interface_id, False, None
            o._ap = {"ssid": req[0]} if req else {}
            o._opts = {"reconnects": -1, "txpower": 20.0, "pm": 1, "protocol": 7, "max_clients": 10}
        return o

    def __init__(self, interface_id=0):
        pass

    def active(self, is_active=None):
        if is_active is not None:
            on = bool(is_active)
            if self._if == STA_IF:
                if not on:
                    _S[vbhw.REQ] = None
                    vbhw.rm("wifi.json")
                _S[vbhw.ACTIVE] = on
            else:
                self._active = on
        return bool(_S[vbhw.ACTIVE]) if self._if == STA_IF else self._active

    def connect(self, ssid=None, password=None, *, bssid=None):
        if not _S[vbhw.ACTIVE]:
            raise OSError("Wifi Not Started")
        req = _S[vbhw.REQ]
        if ssid is None and password is None and req is not None and "key" not in self._ap:
            ssid, key = req[0], req[1]   # the configuration kept over a soft reset
        else:
            ssid = self._ap.get("ssid", "") if ssid is None else ssid   # no argument: the last configuration
            password = self._ap.get("key", "") if password is None else password
            self._ap = {"ssid": ssid, "key": password}
            key = vbhw.khash(password)
        gen = _S[vbhw.GEN] = (_S[vbhw.GEN] or 0) + 1
        _S[vbhw.REQ] = (ssid, key, _t.ticks_ms(), gen)
        vbhw.save("wifi.json", {"ssid": ssid, "key_sha256": key})
        return None

    def disconnect(self):
        _S[vbhw.REQ] = None
        vbhw.rm("wifi.json")
        return None

    def isconnected(self):
        return vbhw.link_up() if self._if == STA_IF else False

    def status(self, param=None):
        if param is None:
            if self._if != STA_IF:
                return None
            req, link = _S[vbhw.REQ], _S[vbhw.LINK]
            if req is None or not _S[vbhw.ACTIVE]:
                return STAT_IDLE
            return link[1] if link[2] == req[3] else STAT_CONNECTING
        if param == "rssi":
            if self._if != STA_IF:
                raise OSError("STA required")
            if not vbhw.link_up():
                raise OSError("Wifi Not Connected")
            return vbhw.dev("wifi").get("rssi", -60)
        if param == "stations":
            if self._if != AP_IF:
                raise OSError("AP required")
            return []
        raise ValueError("unknown status param")

    def scan(self):
        if not _S[vbhw.ACTIVE]:
            raise OSError("STA must be active")
        ap = vbhw.dev("wifi")
        _t.sleep_ms(ap.get("scan_ms", 1500))   # a blocking all-channel scan
        if not (ap.get("up", True) and ap.get("in_range", True)):
            return []
        bssid = bytes(int(x, 16) for x in ap.get("bssid", "a4:cf:12:00:00:01").split(":"))
        auth = AUTH_WPA2_PSK if ap.get("password") else AUTH_OPEN
        return [(ap.get("ssid", "").encode(), bssid, ap.get("channel", 1), ap.get("rssi", -60), auth, False)]

    def ifconfig(self, ip_mask_gateway_dns=None):
        if ip_mask_gateway_dns is not None:
            if ip_mask_gateway_dns == "dhcp" and self._if == STA_IF:
                self._static = None
            elif isinstance(ip_mask_gateway_dns, (tuple, list)) and len(ip_mask_gateway_dns) == 4:
                self._static = tuple(ip_mask_gateway_dns)
            else:
                raise ValueError("invalid arguments")
            return None
        if self._if == AP_IF:
            return ("192.168.4.1", "255.255.255.0", "192.168.4.1", _ZERO)
        if self._static:
            return self._static
        if not vbhw.link_up():
            return (_ZERO, _ZERO, _ZERO, _ZERO)
        ap = vbhw.dev("wifi")
        return (ap.get("ip", "192.168.4.2"), ap.get("netmask", "255.255.255.0"), ap.get("gateway", _ZERO),
                _cfg["dns"] or ap.get("dns", _ZERO))

    def _ipconfig(self, *args, **kwargs):
        ip, mask, gw, _ = self.ifconfig()
        if kwargs:
            if args:
                raise TypeError("can't specify pos and kw args")
            for k in kwargs:
                if k not in ("dhcp4", "addr4", "gw4"):
                    raise ValueError("unexpected key")
            return None
        if len(args) != 1:
            raise TypeError("must query one param")
        if args[0] == "dhcp4" and self._if == STA_IF:
            return self._static is None
        if args[0] == "addr4":
            return (ip, mask)
        if args[0] == "gw4":
            return gw
        raise ValueError("unexpected key")

    def config(self, *args, **kwargs):
        if args and kwargs:
            raise TypeError("either pos or kw args are allowed")
        for k in kwargs:
            v = kwargs[k]
            if k == "mac":
                if len(v) != 6:
                    raise ValueError("invalid buffer length")
            elif k in ("ssid", "essid", "hidden", "security", "authmode", "key", "password", "max_clients"):
                if self._if != AP_IF:
                    raise OSError("AP required")
                self._ap[{"essid": "ssid", "authmode": "security", "password": "key"}.get(k, k)] = v
            elif k in ("hostname", "dhcp_hostname"):
                hostname(v)
            elif k in ("channel", "reconnects", "txpower", "protocol", "pm"):
                self._opts[k] = v
            else:
                raise ValueError("unknown config param")
        if kwargs:
            return None
        if len(args) != 1:
            raise TypeError("can query only one param")
        k = args[0]
        if k == "mac":
            return _mac(self._if)
        if k in ("ssid", "essid"):
            if self._if == AP_IF:
                return self._ap.get("ssid", "ESP_%02X%02X%02X" % tuple(_mac(1)[3:]))
            return self._ap.get("ssid", "")
        if k in ("hidden", "security", "authmode"):
            if self._if != AP_IF:
                raise OSError("AP required")
            return self._ap.get("hidden" if k == "hidden" else "security", False if k == "hidden" else AUTH_OPEN)
        if k == "channel":
            return vbhw.dev("wifi").get("channel", 1) if vbhw.link_up() else self._opts.get("channel", 1)
        if k in ("hostname", "dhcp_hostname"):
            return _cfg["hostname"]
        if k == "ifname":
            return "sta" if self._if == STA_IF else "ap"
        if k in self._opts:
            return self._opts[k]
        raise ValueError("unknown config param")

    def __repr__(self):
        return "<WLAN>"


if vbhw.feature("ipconfig"):   # WLAN.ipconfig() and network.ipconfig() are in the ESP32 port from 1.24.0
    WLAN.ipconfig = WLAN._ipconfig
else:
    del ipconfig
