"""The `polaris` command: one subcommand per process or admin task."""
