"""lmfast.mcp_server: LMFast's capabilities as MCP tools, resources and prompts."""
