"""Imports every command module so that it registers on the typer app."""
from ragbit.cli import index_cmds  # noqa: F401  ragbit index / search / status
