"""The fleet run: a cloud hub, several edges, provisioning and simulated devices on one machine."""
