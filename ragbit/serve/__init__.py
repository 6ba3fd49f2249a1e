"""`ragbit serve` (the OpenAI HTTP API) and `ragbit mcp` (Model Context Protocol over stdio): one service
(`service.py`) over the query pipeline, two thin protocol layers (`app.py`, `mcp_server.py`)."""
