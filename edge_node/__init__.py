"""Edge node: serves the Xiaozhi devices of one site on local models."""

__version__ = "0.1.0"
