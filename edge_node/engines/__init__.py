"""edge_node/engines."""
