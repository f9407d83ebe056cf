"""``xiaozhi-loadgen``: a fleet of simulated firmware devices against an edge node, plus a naive baseline.

See :mod:`bench.loadgen.cli` for the flags and :mod:`bench.loadgen.report` for the report's fields.
"""
