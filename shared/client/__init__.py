"""shared/client."""
