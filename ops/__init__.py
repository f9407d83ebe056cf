"""Operating a deployment: checking that it really works (``xiaozhi-validate``)."""
