"""1,000 fast cycles in a 70 KB heap: no MemoryError, no heap growth after gc.collect() (counts, not time)."""
import re

from board_helpers import Console
from host_tools.flash import build_config, flash
from host_tools.vboard import VBoard


def test_1000_cycles_in_70k_heap_without_growth(fleet, broker):
    vb = VBoard("mem")
    vb.start(heapsize="70k", erase=True)  # the smallest that runs 300 readings in make bench (2 KB steps)
    try:
        con = Console(vb, broker)
        cfg = build_config("dev1", "localhost", broker.port, 0, {"max_cycles": 1000})
        flash("vboard:mem", "demo", "dev1", "unix", cfg, mpy=True)  # as one would for a small heap
        con.expect(r"done cycles=1000 sent=1000", timeout=300)
        text = con.since_boot()
        assert "MemoryError" not in text and "Traceback" not in text, con.evidence()
        stats = [(int(c), int(a)) for c, a in re.findall(r"stats cycles=(\d+) .*heap_alloc=(\d+)", text)]
        assert [c for c, _ in stats] == list(range(100, 1001, 100))
        alloc = dict(stats)
        print("heap_alloc after gc.collect() by cycle:", alloc)
        # live heap after warm-up (cycle 200) vs the end: no growth over 800 cycles
        assert alloc[1000] <= alloc[200], alloc
    finally:
        vb.stop()
