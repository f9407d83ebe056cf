"""edge_node/routing."""
