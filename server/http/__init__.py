"""HTTP transport: one aiohttp app, one middleware pipeline, thin REST and MCP adapters."""
