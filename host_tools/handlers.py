"""What the bridge does with each stored reading, besides storing it: a Python function (--handler
module:function) or an HTTP POST (--webhook URL). Either one raises on failure; the bridge retries it.
"""
import importlib
import importlib.util
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

from .errors import CommandError

Handler = Callable[[dict], object]
EXAMPLE = "MODULE:FUNCTION, e.g. myhandlers:on_reading (myhandlers.py in the current folder) or ./hooks.py:on_reading"
WEBHOOK_TIMEOUT_S = 10


class WebhookError(Exception):
    """The webhook did not take the reading (no answer, or not a 2xx); str() says which, on one line."""


def load(spec: str) -> Handler:
    """The function `spec` names: 'module:function' (the module on sys.path, the current folder first) or
    'path/to/file.py:function'. Every mistake is one CommandError naming --handler."""
    mod_name, colon, fn_name = spec.rpartition(":")
    if not colon or not mod_name or not fn_name:
        raise CommandError(f"--handler {spec!r}: use {EXAMPLE}")
    try:
        module = _import(mod_name)
    except CommandError:
        raise
    except Exception as e:  # the module itself failed on import: its error, on one line
        raise CommandError(f"--handler {spec!r}: importing {mod_name} failed: {type(e).__name__}: {_line(e)}") from None
    fn = getattr(module, fn_name, None)
    if fn is None:
        raise CommandError(f"--handler {spec!r}: {mod_name} has no {fn_name!r}: name a function defined in it")
    if not callable(fn):
        raise CommandError(f"--handler {spec!r}: {mod_name}.{fn_name} is a {type(fn).__name__}, not a function")
    return fn


def _import(mod_name: str):
    if mod_name.endswith(".py"):
        path = Path(mod_name).expanduser()
        if not path.is_file():
            raise CommandError(f"--handler: {path} does not exist")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # `python -m` leaves the current folder off sys.path; a user expects it on
    try:
        return importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        if e.name and (mod_name == e.name or mod_name.startswith(e.name + ".")):  # not a module it imports
            raise CommandError(f"--handler: no module {mod_name!r} (looked in {os.getcwd()} and on sys.path): run "
                               f"from the folder holding {mod_name.split('.')[0]}.py, or set PYTHONPATH") from None
        raise


def webhook(url: str) -> Handler:
    """POST each reading as JSON to `url`; anything but a 2xx answer (or no answer) is a failure."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CommandError(f"--webhook {url!r}: use http://HOST[:PORT]/PATH or https://...")
    where = shown(url)

    def post(reading: dict) -> None:
        req = urllib.request.Request(url, data=json.dumps(reading).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "User-Agent": "sensorpub-bridge"})
        try:
            with urllib.request.urlopen(req, timeout=WEBHOOK_TIMEOUT_S) as r:  # https: certificate verified
                status = r.status
        except urllib.error.HTTPError as e:
            raise WebhookError(f"webhook {where} answered HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError) as e:
            raise WebhookError(f"webhook {where} unreachable: {getattr(e, 'reason', e)}") from None
        if not 200 <= status < 300:
            raise WebhookError(f"webhook {where} answered HTTP {status}")

    return post


def shown(url: str) -> str:
    """The URL without any password, for messages."""
    p = urlsplit(url)
    if p.password is None:
        return url
    host = f"{p.username}:***@{p.hostname}" + (f":{p.port}" if p.port else "")
    return urlunsplit((p.scheme, host, p.path, p.query, p.fragment))


def _line(e: BaseException) -> str:
    return " ".join(str(e).split())
