"""The MCP server: memory tools, resources and a prompt for agents and desktop assistants.

An adapter over the services, like the routes: it holds no logic of its own. Served two ways:
streamable HTTP at /mcp in the application (behind the same API keys, scopes, tenant walls and
rate limits as the REST routes) and stdio (`memory-layer mcp`). See docs/mcp.md.
"""
