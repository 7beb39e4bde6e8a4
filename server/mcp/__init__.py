"""The Model Context Protocol over the shared tool executor (the HTTP transport is server/http/mcp.py)."""
