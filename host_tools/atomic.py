"""All-or-nothing identity directories: written under a hidden name beside their place, then renamed into it.

An identity (certs/<fleet>/devices/NAME, server/, verifier/) is staged as `.NAME.tmp-PID` and renamed to NAME
once every file is in it, so nobody ever sees half of one. Replacing an existing identity swaps directories:
NAME goes to `.NAME.old-PID`, the staged one takes its place, the old one is deleted.

An error or Ctrl-C removes the staged directory at once. A run killed with SIGKILL leaves such hidden
directories; the next run writing beside them calls clean_leftovers(), which deletes half-made ones and
finishes a swap that was under way. Leftovers of a process still alive (another run at work) are left alone.
Files are not fsynced: this guards against a run being killed, not against the host losing power.
"""
import errno
import os
import re
import shutil
from pathlib import Path
from typing import Dict, Tuple

from .errors import CommandError
from .keys import create_file

Files = Dict[str, Tuple[bytes, bool]]  # path inside the identity directory -> (content, private)

_LEFTOVER = re.compile(r"\.(?P<name>[A-Za-z0-9][A-Za-z0-9_-]*)\.(?P<kind>tmp|old)-(?P<pid>[0-9]+)")


def _aside(final: Path, kind: str, pid: int = 0) -> Path:
    return final.with_name(f".{final.name}.{kind}-{pid or os.getpid()}")


def write_dir(final: Path, files: Files, replace: bool = False) -> None:
    """Make directory `final` hold `files`, all at once. With `replace`, an existing `final` is swapped out, and
    its files that `files` does not name (history/, anything a user put there) are carried over; without it,
    an existing `final` is an error."""
    tmp = _aside(final, "tmp")
    try:
        try:
            os.mkdir(tmp)
        except FileNotFoundError:  # the first identity of its kind
            final.parent.mkdir(parents=True, exist_ok=True)
            os.mkdir(tmp)
        base = str(tmp)
        for rel, (data, private) in files.items():  # plain strings: a batch writes thousands of files
            if "/" in rel:
                os.makedirs(os.path.join(base, os.path.dirname(rel)), exist_ok=True)
            create_file(os.path.join(base, rel), data, private)
        if not _rename_new(tmp, final):
            if not replace:
                raise CommandError(f"{final} appeared while this run was making it: another run is issuing it; "
                                   "run this again afterwards (identities that exist are skipped)")
            _carry(final, tmp)
            _swap(tmp, final)
    except BaseException:  # an error or Ctrl-C: leave nothing half-made behind
        _recover(final, os.getpid())
        raise


def _rename_new(tmp: Path, final: Path) -> bool:
    """Rename `tmp` to `final` unless that is a directory with something in it (then False)."""
    try:
        os.rename(tmp, final)  # replaces an empty directory, never a full one
        return True
    except OSError as e:
        if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False
        raise


def _carry(old: Path, new: Path) -> None:
    """Copy into `new` what `old` has and `new` does not (not a write_file leftover)."""
    for src in old.rglob("*"):
        dst = new / src.relative_to(old)
        if src.is_file() and not dst.exists() and not src.name.endswith(".tmp"):
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)  # keeps the mode: a private file stays 0600


def _swap(tmp: Path, final: Path) -> None:
    old = _aside(final, "old")
    os.rename(final, old)
    os.rename(tmp, final)  # killed just before this: clean_leftovers() finishes it
    shutil.rmtree(old)


def _alive(pid: int) -> bool:
    """Is process `pid` running (so its staged directories are in use)?"""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def clean_leftovers(parent: Path) -> int:
    """Tidy what killed runs left in `parent`: delete half-made identities, finish interrupted swaps (a staged
    directory next to an `.old` one was complete). Returns how many identities needed it."""
    if not parent.is_dir():
        return 0
    found = set()
    with os.scandir(parent) as entries:
        for e in entries:
            m = _LEFTOVER.fullmatch(e.name) if e.name.startswith(".") else None
            if m and not _alive(int(m["pid"])):
                found.add((m["name"], int(m["pid"])))
    for name, pid in found:
        _recover(parent / name, pid)
    return len(found)


def _recover(final: Path, pid: int) -> None:
    """Put right what process `pid` left of `final`: an `.old` next to a staged one means the staged one was
    complete, so it goes into place; whatever is left over is deleted."""
    tmp, old = _aside(final, "tmp", pid), _aside(final, "old", pid)
    if old.exists() and not final.exists():  # killed between the two renames of a swap
        os.rename(tmp if tmp.exists() else old, final)
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
