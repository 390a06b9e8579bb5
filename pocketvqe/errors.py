"""One exception type for every user-facing problem: the message names the problem and the fix."""


class PocketVQEError(Exception):
    """A problem with the user's input or environment; the CLI prints it without a traceback."""
