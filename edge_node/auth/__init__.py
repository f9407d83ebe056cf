"""Who may talk to this edge: the fleet's revoked devices (``revocations``), followed from the hub and
enforced at the handshake and on open sessions."""
