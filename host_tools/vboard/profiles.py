"""Profiles of the emulated ESP32 boards: what a stock MicroPython build reports, per chip and release.

`profile(board, micropython)` gives the content of ROM/profile.json, which the board-side emulation
(host_tools/vboard/esp32/vbhw.py) reads at boot. Every figure comes from the MicroPython sources of
the release (github.com/micropython/micropython, tags v1.23.0 ... v1.28.0) or from what released
firmware prints; the source is named next to each figure.
"""
from typing import Any, Dict, List, Optional, Tuple

from ..errors import CommandError

# Releases the firmware supports, each emulated (real tags; 1.24.0 and 1.26.0 were superseded by .1 fixes).
SUPPORTED_MICROPYTHON: Tuple[str, ...] = ("1.23.0", "1.24.1", "1.25.0", "1.26.1", "1.27.0", "1.28.0")
# ... plus older ones an emulated board can run, so the host tools' refusal of them can be tested.
KNOWN_MICROPYTHON: Tuple[str, ...] = ("1.22.2",) + SUPPORTED_MICROPYTHON

# os.uname().version is MICROPY_GIT_TAG " on " MICROPY_BUILD_DATE (extmod/modos.c); the date is the day
# the release firmware was built (py/makeversionhdr.py), as the official downloads print it, e.g.
# "MicroPython v1.24.1 on 2024-11-29; Generic ESP32 module with ESP32" and ESP32_GENERIC-20260406-v1.28.0.bin.
BUILD_DATES: Dict[str, str] = {
    "1.22.2": "2024-02-22",
    "1.23.0": "2024-06-02",
    "1.24.1": "2024-11-29",
    "1.25.0": "2025-04-15",
    "1.26.1": "2025-09-11",
    "1.27.0": "2025-12-09",
    "1.28.0": "2026-04-06",
}

# .mpy header: MPY_VERSION 6; MPY_SUB_VERSION 3 from 1.23.0 on, 2 in 1.22 (py/persistentcode.h);
# sys.implementation._mpy = MPY_VERSION | (sub | arch << 2) << 8 (py/persistentcode.h MPY_FILE_HEADER_INT).
_MPY_VERSION = 6
# MP_NATIVE_ARCH_* (py/persistentcode.h): the ESP32 and S3 build the xtensawin emitter
# (ports/esp32/mpconfigport.h MICROPY_EMIT_XTENSAWIN); the C3 builds the RV32 emitter from 1.24.0 on
# (MICROPY_EMIT_RV32, sdkconfig.base CONFIG_ESP_SYSTEM_PMP_IDRAM_SPLIT=n), none in 1.23.0.
_ARCH_XTENSAWIN, _ARCH_RV32IMC = 10, 11

# heap the board-side emulation keeps after install() on the 64-bit Unix port (measured: 46-50 KB)
EMULATION_HEAP_K = 56

_ESP32_PINS = list(range(0, 24)) + [25, 26, 27] + list(range(32, 40))
_S3_PINS = list(range(0, 22)) + list(range(33, 49))
_C3_PINS = list(range(0, 14)) + [20, 21]

PROFILES: Dict[str, Dict[str, Any]] = {
    "esp32_generic": {
        "chip": "ESP32",
        "build": "ESP32_GENERIC",                  # sys.implementation._build (py/mkrules.cmake: the board name)
        "board_name": "Generic ESP32 module",      # boards/ESP32_GENERIC/mpconfigboard.h MICROPY_HW_BOARD_NAME
        "mcu_name": "ESP32",                       # ... MICROPY_HW_MCU_NAME
        "arch": "xtensawin",
        # ESP-IDF's default CONFIG_ESP_DEFAULT_CPU_FREQ_MHZ is 160; ESP32_GENERIC does not add
        # boards/sdkconfig.240mhz (ports/esp32/boards/ESP32_GENERIC/mpconfigboard.cmake)
        "cpu_freq": 160_000_000,
        "freqs_mhz": [20, 40, 80, 160, 240],       # modmachine.c mp_machine_set_freq
        # ports/esp32/mpconfigport.h:34 (v1.24.1; :32 in v1.27.0/v1.28.0): MICROPY_GC_INITIAL_HEAP_SIZE
        # (56 * 1024) for CONFIG_IDF_TARGET_ESP32, unchanged 1.23.0-1.28.0. gc_setup_area() (py/gc.c:124-152
        # in v1.24.1) keeps a 1-bit/block finaliser table and a 2-bit/block allocation table for
        # 16-byte blocks: A = (57344 - 1) * 8 // (8 + 4 + 512) = 875 ATB bytes -> 3500 blocks ->
        # gc.mem_free() + gc.mem_alloc() == 56000 right after boot. (1.28.0 adds a weakref table only
        # with MICROPY_PY_WEAKREF, which needs ROM level EVERYTHING; the ESP32 is EXTRA_FEATURES.)
        # The real heap then grows on demand (MICROPY_GC_SPLIT_HEAP_AUTO) into free IDF RAM.
        "gc_heap_arena": 56 * 1024,
        "gc_heap": 56000,
        # -X heapsize for the 64-bit Unix port, which cannot grow its heap: the size the ESP32's heap is
        # sized to grow to ("grow the heap once (double it) and still have enough internal RAM to start
        # WiFi and make a HTTPS request", the comment above MICROPY_GC_INITIAL_HEAP_SIZE), times two as
        # 64-bit GC blocks and object words are twice as large (MICROPY_BYTES_PER_GC_BLOCK = 4 * word;
        # the Unix port's mbedTLS also allocates from this heap, the ESP32's from the IDF heap), plus
        # EMULATION_HEAP_K for the emulated machine/network/time... modules, which are Python on the
        # virtual board's heap but C in flash on a real one.
        "heapsize": "%dk" % (2 * 2 * 56 + EMULATION_HEAP_K),
        "pins": _ESP32_PINS,                       # machine_pin.h MICROPY_HW_ENABLE_GPIOn, no SPIRAM
        "input_only": list(range(34, 40)),         # machine_pin.c GPIO_FIRST_NON_OUTPUT (34)
        "temperature": "raw_temperature",          # modesp32.c: CONFIG_IDF_TARGET_ESP32 only
        "led_pin": 2,
        "hostname": "mpy-esp32",                   # mpconfigport.h MICROPY_PY_NETWORK_HOSTNAME_DEFAULT
    },
    "esp32_s3": {
        "chip": "ESP32-S3",
        "build": "ESP32_GENERIC_S3",
        "board_name": "Generic ESP32S3 module",
        "mcu_name": "ESP32S3",
        "arch": "xtensawin",
        "cpu_freq": 160_000_000,                   # sdkconfig.240mhz only for the SPIRAM_OCT variant
        "freqs_mhz": [20, 40, 80, 160, 240],
        # MICROPY_GC_INITIAL_HEAP_SIZE (64 * 1024) for other targets -> 64000 (same arithmetic);
        # with SPIRAM (sdkconfig.spiram_sx) the heap grows far more than on the ESP32.
        "gc_heap_arena": 64 * 1024,
        "gc_heap": 64000,
        "heapsize": "%dk" % (2 * 2 * 64 + EMULATION_HEAP_K),
        "pins": _S3_PINS,                          # GPIO26 used by SPIRAM; 47/48 with EXTENDED_IO (default 1)
        "input_only": [],
        "temperature": "mcu_temperature",
        "led_pin": -1,                             # RGB LED (neopixel) on the DevKitC: no plain LED pin
        "hostname": "mpy-esp32s3",
    },
    "esp32_c3": {
        "chip": "ESP32-C3",
        "build": "ESP32_GENERIC_C3",
        "board_name": "ESP32C3 module",
        "mcu_name": "ESP32C3",
        "arch": "rv32imc",
        "cpu_freq": 160_000_000,
        "freqs_mhz": [20, 40, 80, 160],            # no 240 MHz on the C3 (modmachine.c)
        "gc_heap_arena": 64 * 1024,
        "gc_heap": 64000,
        "heapsize": "%dk" % (2 * 2 * 64 + EMULATION_HEAP_K),
        "pins": _C3_PINS,                          # GPIO18/19 are the USB serial/JTAG pins
        "input_only": [],
        "temperature": "mcu_temperature",
        "led_pin": 8,
        "hostname": "mpy-esp32c3",
    },
}


def _release(v: str) -> Tuple[int, int, int]:
    a, b, c = (int(x) for x in v.split("."))
    return a, b, c


def mpy_header(arch: str, micropython: str) -> int:
    """sys.implementation._mpy of a build for `arch` of release `micropython`."""
    code = _ARCH_XTENSAWIN if arch == "xtensawin" else _ARCH_RV32IMC
    if arch == "rv32imc" and _release(micropython) < (1, 24, 0):
        code = 0  # no RV32 native emitter before 1.24.0
    sub = 3 if _release(micropython) >= (1, 23, 0) else 2
    return _MPY_VERSION | (sub | code << 2) << 8


def features(micropython: str) -> Dict[str, bool]:
    """API differences between the supported releases (ESP32 port sources of each tag)."""
    r = _release(micropython)
    return {
        "ipconfig": r >= (1, 24, 0),          # network.ipconfig() and WLAN.ipconfig() (network_common.c)
        "impl_build": r >= (1, 25, 0),        # sys.implementation._build (py/modsys.c)
        "impl_thread": r >= (1, 26, 0),       # sys.implementation._thread == 'GIL'
        "pin_toggle": r >= (1, 25, 0),        # Pin.toggle() (machine_pin.c)
        "stat_connect_fail": r >= (1, 25, 0),  # network.STAT_CONNECT_FAIL (modnetwork_globals.h)
    }


def resolve(micropython: Optional[str]) -> str:
    """'1.24' -> '1.24.1' (the newest known patch release), '1.24.1' -> itself, None -> the newest."""
    mp = (micropython or SUPPORTED_MICROPYTHON[-1]).strip().lstrip("v")
    if mp.count(".") == 1:
        patches = [v for v in KNOWN_MICROPYTHON if v.startswith(mp + ".")]
        mp = patches[-1] if patches else mp
    if mp not in KNOWN_MICROPYTHON:
        raise CommandError(f"--micropython {micropython}: emulated releases are {', '.join(KNOWN_MICROPYTHON)} "
                           f"(or major.minor, e.g. 1.24)")
    return mp


def profile(board: str, micropython: Optional[str] = None) -> Dict[str, Any]:
    """The profile.json content for `board` running MicroPython `micropython` (default: the newest
    supported; "1.24" means the newest 1.24.x).

    Raises CommandError naming --board or --micropython and the valid values."""
    if board not in PROFILES:
        raise CommandError(f"--board {board}: emulated boards are {', '.join(PROFILES)}")
    mp = resolve(micropython)
    p = PROFILES[board]
    feats = features(mp)
    machine = f"{p['board_name']} with {p['mcu_name']}"  # MICROPY_BANNER_MACHINE / uname().machine
    tag = f"v{mp} on {BUILD_DATES[mp]}"
    impl: List[List[Any]] = [["name", "micropython"], ["version", list(_release(mp)) + [""]],
                             ["_machine", machine], ["_mpy", mpy_header(p["arch"], mp)]]
    if feats["impl_build"]:
        impl.append(["_build", p["build"]])
    if feats["impl_thread"]:
        impl.append(["_thread", "GIL"])  # the ESP32 port builds MICROPY_PY_THREAD_GIL
    out: Dict[str, Any] = {"board": board, "micropython": mp}
    out.update({k: v for k, v in p.items() if k not in ("board_name", "mcu_name")})
    out.update({
        "machine": machine,
        "implementation": impl,                      # field order as sys.implementation prints it
        "sys_version": "3.4.0; MicroPython " + tag,  # sys.version
        "uname": [["sysname", "esp32"], ["nodename", "esp32"], ["release", mp], ["version", tag],
                  ["machine", machine]],
        "maxsize": 2**30 - 1,                        # MP_SMALL_INT_MAX on a 32-bit build
        "rtc_mem_max": 2048,                         # machine_rtc.c MICROPY_HW_RTC_USER_MEM_MAX
        "etimedout": 116,                            # newlib's ETIMEDOUT (MICROPY_USE_INTERNAL_ERRNO 0)
        "features": feats,
    })
    return out
