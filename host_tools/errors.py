"""The one error type the CLI turns into a single line and a non-zero exit."""


class CommandError(Exception):
    """A failure the user can fix; str(err) is the whole message they see."""
