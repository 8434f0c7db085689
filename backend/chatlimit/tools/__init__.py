"""Operational tooling beside the request path, an optional extra (`pip install
'chatlimit[tools]'`): process supervision (processes.py), Redis topologies, the local stack
behind `chatlimit cluster` (stack.py; not to be confused with Redis Cluster), `chatlimit
compare` and `chatlimit bench`. Nothing in the app imports it."""

# The subcommands' one-line help, here so that `chatlimit --help` can list them (and say how to
# install them) without importing the tools.
TOOLS = {
    "cluster": "run N replicas behind nginx (sharing redis-server, or memory), in the foreground",
    "compare": "send the guide's requests as one client and say whether the limit held",
    "bench": "measure what rate limiting costs (starts its own servers, uses wrk)",
}
