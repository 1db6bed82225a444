"""Which virtual board a command means for a fleet, when it names none: `vboard` without --name, and
`--port vboard` (flash, console).

The default fleet's board is vb0, as before fleets had boards of their own; another fleet's is <fleet>-vb0,
so two fleets' boards never share a flash image (run/vboard-NAME) or a console. A board named explicitly
(`--name`, `--port vboard:NAME`) is that board, whatever the fleet. `fleet up` names its boards after their
devices and lists them in run/fleet-<fleet>/boards.json (fleet_run.py): asked for a fleet's board that never
ran, the answer names those instead.
"""
from .errors import CommandError
from .paths import DEFAULT_FLEET, check_name

DEFAULT_BOARD = "vb0"
BARE = "vboard"  # --port vboard: the fleet's own board


def default_board(fleet: str) -> str:
    """The name of the fleet's own virtual board: vb0 for the default fleet, FLEET-vb0 for another."""
    check_name("fleet", fleet)
    if fleet == DEFAULT_FLEET:
        return DEFAULT_BOARD
    name = f"{fleet}-{DEFAULT_BOARD}"
    if len(name) > 63:
        raise CommandError(f"--fleet {fleet}: too long to name its virtual board {name!r} (63 characters at most): "
                           "name the board with --name NAME (vboard) or --port vboard:NAME")
    return name


def board_port(port: str, fleet: str) -> str:
    """`--port vboard` is the fleet's own board (`vboard:<default_board>`); any other port is as given."""
    return f"{BARE}:{default_board(fleet)}" if port == BARE else port


def console_port(port: str, fleet: str) -> str:
    """As board_port; a bare `vboard` whose board never ran (no console log) is one line naming what to do:
    the fleet's `fleet up` boards if it has some, else how to start its board."""
    if port != BARE:
        return port
    from .fleet_run import members
    from .vboard import VBoard
    name = default_board(fleet)
    if VBoard(name).console_log.exists():
        return f"{BARE}:{name}"
    ups = sorted(members(fleet))
    if ups:
        raise CommandError(f"fleet {fleet!r} has no virtual board {name!r}; its {len(ups)} boards from 'fleet up' "
                           f"are named after their devices ({ups[0]}..{ups[-1]}): --port {BARE}:{ups[0]}")
    other = "" if name == DEFAULT_BOARD or not VBoard(DEFAULT_BOARD).console_log.exists() else \
        f", or --port {BARE}:{DEFAULT_BOARD} for the board started without --fleet"
    raise CommandError(f"virtual board {name!r} of fleet {fleet!r} has no console yet: start it with "
                       f"'sensorpub vboard start --fleet {fleet}'{other}")
