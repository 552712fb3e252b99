"""Several servers: the head's worker runs each job on a node of a Ray cluster (docs/cluster.md).

:mod:`runner.cluster.address` (addresses, the public-address warning, what the worker saw of the
cluster) never imports Ray; :mod:`runner.cluster.backend` and :mod:`runner.cluster.connect` do, and are
imported only by a worker given a cluster.
"""
