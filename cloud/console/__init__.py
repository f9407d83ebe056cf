"""The admin console: fleet, devices, routing, live view and audit log (``xiaozhi-cloud console``)."""
