"""The official MCP conformance suite against the real server (through a key-adding proxy)."""
