"""The Grafana dashboards as data: one module per dashboard, each a ``DASHBOARD`` made of the plain
panel descriptions of :mod:`ops.dashboards.spec`.

Keeping them data lets a reader see a dashboard as the list of what it shows, and lets one builder
(:mod:`ops.dashboards.builder`) apply Grafana's boilerplate and the fleet's rules to every panel the
same way; ``python -m ops.grafana`` writes the JSON.
"""
