"""Type-check firmware/ and the board and sensor files against micropython-esp32-stubs with mypy.

mypy cannot take site-packages as a search path, so the stub-only modules are linked into
build/mpstubs first; the stubs' own stdlib serves as the typeshed (MicroPython's, not CPython's).
"""
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent


def main() -> int:
    sp = Path(sysconfig.get_paths()["purelib"])
    if not (sp / "stdlib" / "VERSIONS").exists() or not (sp / "machine.pyi").exists():
        print("typecheck: micropython-esp32-stubs is not installed: run 'make setup'", file=sys.stderr)
        return 2
    out = ROOT / "build" / "mpstubs"
    out.mkdir(parents=True, exist_ok=True)
    for p in sp.iterdir():
        stub_pkg = p.is_dir() and any(p.glob("*.pyi")) and not any(p.glob("*.py")) and p.name != "stdlib"
        if (p.suffix == ".pyi" or stub_pkg) and not (out / p.name).exists():
            (out / p.name).symlink_to(p)
    env = dict(os.environ, MYPYPATH=os.pathsep.join([str(out), str(ROOT / "firmware"), str(ROOT / "boards")]))
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "firmware").glob("*.py"))
    files += sorted(str(p.relative_to(ROOT)) for p in (ROOT / "boards").glob("*.py"))  # sensors are imported lazily
    cmd = [sys.executable, "-m", "mypy", "--custom-typeshed-dir", str(sp), "--no-site-packages",
           "--check-untyped-defs", "--no-error-summary", "--cache-dir", str(ROOT / "build" / "mypy-cache"),
           "--disable-error-code", "import-not-found", "--disable-error-code", "no-redef", *files]
    # 'board' is copied in at flash time (boards/<name>.py -> /board.py): declared by the stubs dir
    (out / "board.pyi").write_text("NAME: str\nclass Board:\n    def __init__(self, cfg: dict) -> None: ...\n")
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    ours = [ln for ln in r.stdout.splitlines() if ln.startswith(("firmware/", "boards/"))]  # not the stubs' own
    for ln in ours:
        print(ln)
    if r.returncode not in (0, 1) or (r.returncode == 1 and not r.stdout.strip()):
        print(r.stdout + r.stderr, file=sys.stderr)
        return 2
    errors = [ln for ln in ours if ": error:" in ln]
    print(f"typecheck: {len(files)} files, {len(errors)} errors against micropython-esp32-stubs")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
