"""The exceptions the OCPP core shares, whatever the OCPP version a charger speaks.

Three families:
  - `DB_UNAVAILABLE`: what asyncpg and the pool raise when Postgres is not there right now
    (a charger is asked to resend, a buffered write waits for the next flush);
  - a charger's answer to one of our calls that is not a CALLRESULT (`ChargerGone`,
    `CallErrorAnswer`), and a frame of its own we answer with a CALLERROR (`FrameError`);
  - `CommandError` and its kinds: why a command from the command API got no answer, each
    with the HTTP status and error code the API (and the cross-instance router) report.
"""

from __future__ import annotations

import asyncpg
from ocpp.exceptions import OCPPError
from ocpp.messages import CallError

# Errors that mean "the database is not there right now": the charger should resend.
DB_UNAVAILABLE = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, TimeoutError,
                  asyncpg.CannotConnectNowError)


class MessageTypeNotSupportedError(OCPPError):
    """OCPP-J 2.0.1: a MessageTypeId we do not know (the library has no class for it)."""

    code = "MessageTypeNotSupported"
    default_description = "A message with a MessageTypeId that is not supported was received"


class RpcFrameworkError(OCPPError):
    """OCPP-J 2.0.1: not a valid RPC request at all (the MessageId could not be read, ...)."""

    code = "RpcFrameworkError"
    default_description = "The content of the message is not a valid RPC request"


def call_error_json(unique_id: str, error: OCPPError) -> str:
    """A CALLERROR frame answering `unique_id` with the library error's code and text."""
    return CallError(unique_id, error.code, error.description, error.details or {}).to_json()


class FrameError(Exception):
    """A frame we answer with a CALLERROR (or drop when it has no usable message id)."""

    def __init__(self, unique_id: str | None, error: OCPPError):
        super().__init__(error.description)
        self.unique_id = unique_id
        self.error = error

    def call_error_json(self) -> str:
        return call_error_json(self.unique_id or "-1", self.error)


class ChargerGone(Exception):
    """The connection closed while a call was waiting for its answer."""


class CallErrorAnswer(Exception):
    """The charger answered a call with CALLERROR."""

    def __init__(self, code: str, description: str, details: object):
        super().__init__(f"{code}: {description}")
        self.code, self.description, self.details = code, description, details


class CommandError(Exception):
    """A command that did not get an answer; `status` is the HTTP status the API uses."""

    status = 500
    code = "error"


class InvalidCommand(CommandError):
    status, code = 400, "invalid_request"


class UnknownOperation(CommandError):
    status, code = 404, "unknown_operation"


class ChargerOffline(CommandError):
    status, code = 409, "charger_offline"


class CommandTimeout(CommandError):
    status, code = 504, "timeout"


class ChargerCallError(CommandError):
    """The charger answered with CALLERROR (its answer, reported as 502)."""

    status, code = 502, "call_error"

    def __init__(self, answer: CallErrorAnswer):
        super().__init__(f"the charger answered with CALLERROR {answer.code}: {answer.description}")
        self.answer = answer


# The kinds a routed command's outcome row can name (routing.py turns them back into errors).
COMMAND_ERRORS: dict[str, type[CommandError]] = {
    cls.code: cls for cls in (InvalidCommand, UnknownOperation, ChargerOffline, CommandTimeout)
}
