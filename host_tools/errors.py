"""The one error type the CLI turns into a single line and a non-zero exit."""


class CommandError(Exception):
    """A failure the user can fix; str(err) is the whole message they see, `code` the exit status (1 unless
    a command documents others, as `verify` does)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code
