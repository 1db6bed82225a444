# ntptime as an ESP32 firmware freezes it (micropython-lib "ntptime" API), for the emulated board.
# The NTP server is the host's UTC clock (plus hw.json ntp.offset_s) while hw.json says ntp.reachable;
# otherwise the query times out after `timeout` seconds with OSError(ETIMEDOUT) as a lost UDP reply
# does. Without Wi-Fi the server name cannot be resolved: OSError(-202) as from getaddrinfo().
import vbhw

host = "pool.ntp.org"   # the NTP host can be changed at runtime: ntptime.host = "myhost.org"
timeout = 1             # seconds to wait for the reply


def time():
    from time import gmtime
    import socket
    if not vbhw.link_up():
        socket.getaddrinfo(host, 123)   # raises OSError(-202) for a name, as on the board
    ntp = vbhw.dev("ntp")
    if not ntp.get("reachable", True) or not vbhw.link_up():
        vbhw.real_time.sleep(timeout)
        import vb_sensors
        raise vb_sensors.etimedout()
    unix = int(vbhw.real_time.time() + ntp.get("offset_s", 0))
    # the result counts from the port's epoch, as the real module derives it from gmtime(0)
    return unix - 946684800 if gmtime(0)[0] == 2000 else unix


def settime():
    # there is no time zone: the RTC is set to UTC
    t = time()
    import machine
    from time import gmtime
    tm = gmtime(t)
    machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6] + 1, tm[3], tm[4], tm[5], 0))
