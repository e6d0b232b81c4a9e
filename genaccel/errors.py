"""Exceptions whose message is meant for the user, printed by the CLI without a traceback."""


class UserFacingError(Exception):
    """Bad input or a missing resource: the message says what is wrong and what is accepted."""
