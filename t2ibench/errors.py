"""User-facing errors: the CLI prints their message as one line and exits non-zero, no traceback."""


class UserError(Exception):
    """Bad input or a missing prerequisite the user can fix. The message is one actionable line."""

    exit_code = 2


class MissingWeightsError(UserError):
    """A weights file is not available locally; the message names it and how to fetch it."""
