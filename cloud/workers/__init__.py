"""Cloud workers: what an edge escalates to over NATS (LLM on vLLM, multilingual ASR)."""
