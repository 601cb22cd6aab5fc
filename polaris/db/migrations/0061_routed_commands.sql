-- Commands for a charger held by another OCPP server instance (several `polaris ocpp`
-- behind one balancer). The instance that received the command writes a row and
-- NOTIFYs ocpp_commands; the instance holding the charger claims it, sends the command,
-- writes the outcome and NOTIFYs back. The requester deletes the row when it has read the
-- outcome or given up waiting, so a command is never sent after its caller was told it
-- timed out (unless it was already claimed).
CREATE TABLE ocpp.routed_commands (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    target_instance text NOT NULL,
    charge_box_id   text NOT NULL,
    operation       text NOT NULL,
    payload         jsonb NOT NULL,
    requested_by    text,
    answer_timeout  double precision NOT NULL CHECK (answer_timeout > 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    claimed_at      timestamptz,
    answered_at     timestamptz,
    -- answered, or the CommandError code: invalid_request, charger_offline, timeout, call_error, error
    outcome         text,
    answer          jsonb,
    error_message   text,
    -- a CALLERROR's errorCode, errorDescription and errorDetails
    call_error      jsonb
);

CREATE INDEX routed_commands_pending_idx ON ocpp.routed_commands (target_instance, created_at)
    WHERE claimed_at IS NULL;
