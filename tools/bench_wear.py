"""Flash wear of the outbox, erases per reading on LittleFS (tools/mp_outbox_wear.py), against the ring-file
outbox of earlier firmware taken from git history in the same run: the ratio is the figure."""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = "f46557d"  # the last commit with the ring-file outbox


def run(outbox_dir: Path, n: int, device: str = "dev1") -> dict:
    mp = Path(sys.executable).parent / "micropython"
    r = subprocess.run([str(mp), "-X", "heapsize=4m", str(ROOT / "tools" / "mp_outbox_wear.py"), str(outbox_dir),
                        str(n), device], capture_output=True, text=True, timeout=300)
    if "RESULT" not in r.stdout:
        sys.exit(f"bench_wear: {r.stdout}{r.stderr}")
    return json.loads(r.stdout.split("RESULT", 1)[1])


def figures(n: int = 500) -> dict:
    """This firmware's outbox (also with a 25-character device id) and the ring file from git history."""
    ours = run(ROOT / "firmware", n)
    long_name = run(ROOT / "firmware", n, "greenhouse-north-bench-07")
    ref = None
    with tempfile.TemporaryDirectory() as t:
        try:
            old = subprocess.run(["git", "-C", str(ROOT), "show", f"{REFERENCE}:firmware/outbox.py"],
                                 capture_output=True, check=True, timeout=30).stdout
            (Path(t) / "outbox.py").write_bytes(old)
            (Path(t) / "log.py").write_bytes((ROOT / "firmware" / "log.py").read_bytes())
            ref = run(Path(t), n)
        except (subprocess.CalledProcessError, FileNotFoundError):
            print("outbox wear: no git history here, so no reference run")
    return {"ours": ours, "long_name": long_name, "ring_file": ref}


def main(n: int = 500) -> dict:
    f = figures(n)
    ours, long_name, ref = f["ours"], f["long_name"], f["ring_file"]
    day = 86400 / 30
    print(f"outbox flash wear, {n} readings acknowledged at once, LittleFS 4 KB blocks:")
    print(f"  this firmware: {ours['erases_per_reading']:.3f} erases/reading ({ours['erases_per_reading'] * day:.0f}/day "
          f"at 30 s), {ours['bytes_programmed_per_reading']} bytes programmed/reading ({ours['bytes']}-byte reading)")
    print(f"  with a 25-character device id: {long_name['erases_per_reading']:.3f} erases/reading")
    if ref:
        print(f"  ring file ({REFERENCE}): {ref['erases_per_reading']:.3f} erases/reading, "
              f"{ref['bytes_programmed_per_reading']} bytes programmed/reading")
        print(f"  ratio: {ref['erases_per_reading'] / ours['erases_per_reading']:.0f}x fewer erases, "
              f"{ref['bytes_programmed_per_reading'] / ours['bytes_programmed_per_reading']:.0f}x fewer bytes")
    return f


if __name__ == "__main__":
    main()
