"""The capacity planner (``xiaozhi-plan``): how much hardware a fleet needs, from measured costs."""
