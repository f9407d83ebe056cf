"""The direct route from an edge to an OpenAI-compatible LLM provider."""
