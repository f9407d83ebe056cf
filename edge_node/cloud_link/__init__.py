"""The edge's link to the cloud tier over its local NATS leaf server.

- ``link``: the connection, link state, remote LLM streams and remote ASR, with circuit breakers;
- ``breaker``: a circuit breaker per remote route;
- ``kv_watch``: following a hub KV bucket across link outages (the routing policy's and the revocations' watches);
- ``kv_cache``: the L2 cache level in a KV bucket shared by all edges;
- ``heartbeat``: this edge's stats published for the console and provisioning.
"""
