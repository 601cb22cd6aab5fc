"""Reusable widgets of the console, one module each."""
