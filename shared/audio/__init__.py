"""shared/audio."""
