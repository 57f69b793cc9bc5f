"""Peers: other tools run on the benchmark's scenario beside mxd and the floor.

A peer is its pinned requirements (installed by the harness into a virtual environment of
its own, see ``environment.py``) and a runner script executed by that environment's
interpreter, one process per phase, writing the same timing file as ``phase.py``.
"""

from __future__ import annotations

from peers.environment import HERE, Environment, Peer, prepare

_PROBE = """
import importlib.metadata as m, json
import metaxy, duckdb, deltalake, sqlglot, polars, polars_hash, narwhals  # importable
names = ["metaxy", "duckdb", "sqlglot", "deltalake", "polars", "polars-hash", "narwhals",
         "ibis-framework", "pyarrow"]
print(json.dumps({n: m.version(n) for n in names}))
"""

METAXY = Peer(
    name="metaxy",
    version="0.1.11",
    # The versions Metaxy 0.1.11's lock file uses for DuckDB and sqlglot.
    requirements=("metaxy[duckdb,delta]==0.1.11", "duckdb==1.4.3", "sqlglot==28.10.0"),
    runner=HERE / "metaxy_peer.py",
    probe=_PROBE,
)

PEERS = {peer.name: peer for peer in (METAXY,)}

__all__ = ["PEERS", "Environment", "Peer", "prepare"]
