"""edge_node/session."""
