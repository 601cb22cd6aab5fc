"""Operations: what an operator runs around the services (secrets, readiness checks)."""
