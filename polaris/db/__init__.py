"""Postgres: connection pool, embedded server for local mode, migrations, repositories."""
