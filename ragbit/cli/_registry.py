"""Imports every command module so that it registers on the typer app."""
from ragbit.cli import index_cmds  # noqa: F401  ragbit index / search / status
from ragbit.cli import generate_cmd  # noqa: E402,F401
from ragbit.cli import query_cmds  # noqa: F401  ragbit query / chat
from ragbit.cli import serve_cmds  # noqa: F401  ragbit serve / mcp
from ragbit.cli import model_cmds  # noqa: F401  ragbit models / pull
from ragbit.cli import server_cmds  # noqa: F401  ragbit server list / stop
from ragbit.cli import symbols_cmds  # noqa: F401  ragbit symbols
from ragbit.cli import eval_cmd  # noqa: F401  ragbit eval
