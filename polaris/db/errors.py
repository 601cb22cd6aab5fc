"""Domain errors raised by repositories; the CLI and the APIs turn them into messages."""


class RepoError(Exception):
    """Base class: the message is meant for a person."""

    code = "invalid"


class NotFound(RepoError):
    code = "not_found"


class AlreadyExists(RepoError):
    code = "already_exists"


class InvalidInput(RepoError):
    code = "invalid_input"
