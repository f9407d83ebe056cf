"""Provisioning: the fleet's OTA and activation service for devices, and edge enrollment."""
