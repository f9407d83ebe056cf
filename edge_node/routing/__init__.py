"""One decision per turn and where its rules come from.

- ``router``: which route answers a turn (intent, cache, local LLM, cloud) and its fallback chain;
- ``intent``: the rules that answer device commands, the time and the date without a model;
- ``rules``: the routing rules' measures of a turn (language, complexity);
- ``source``: the routing policy in force: the hub's KV copy, else the local file, else the defaults.
"""
