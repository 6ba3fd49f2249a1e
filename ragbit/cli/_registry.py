"""Imports every command module so that it registers on the typer app."""
from ragbit.cli import generate_cmd  # noqa: E402,F401
