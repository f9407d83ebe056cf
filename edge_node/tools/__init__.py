"""Tools the LLM may call: the device's MCP tools, the server's own (time, calculator, timer) and
operators' plugins (Python entry points in the ``xiaozhi.tools`` group), and the loop that runs them."""
