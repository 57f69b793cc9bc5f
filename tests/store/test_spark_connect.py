"""The spark store through Spark Connect (``remote = "sc://..."``): a real Connect server
(pyspark's own, started here with ``spark-submit``) serves every command, as a cluster
would; results equal the DuckDB store's.

Commands run as separate processes: a Connect client switches its whole process to Connect
mode, which the other Spark tests (a local session in this process) must not see.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tests.store.test_spark import EXECUTORS

# (Not in the "spark" xdist group: nothing here uses this process's Spark session, so the
# module can run on the other worker, beside the local-session tests.)
pytestmark = [pytest.mark.spark, pytest.mark.xdist_group("spark-connect")]


@pytest.fixture(scope="module")
def connect_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Spark Connect server on a free local port, for the module's tests."""
    import pyspark

    home = Path(pyspark.__file__).parent
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path_factory.mktemp("connect") / "server.log"
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    with log.open("w") as out:
        server = subprocess.Popen(
            [
                str(home / "bin" / "spark-submit"),
                "--class",
                "org.apache.spark.sql.connect.service.SparkConnectServer",
                "--master",
                "local[2]",
                "--conf",
                f"spark.connect.grpc.binding.port={port}",
                "--conf",
                "spark.driver.memory=2g",
                "--conf",
                "spark.ui.enabled=false",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 180
        while "Spark Connect server started" not in log.read_text():
            assert server.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the Connect server did not start"
            time.sleep(0.5)
        yield f"sc://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def with_connect_store(root: Path, url: str) -> None:
    config = root / "metaxy.toml"
    config.write_text(
        config.read_text()
        + f'\n[stores.connect]\ntype = "spark"\n\n[stores.connect.config]\nremote = "{url}"\n'
        + 'warehouse = ".mxd/connect-warehouse"\n'
    )


def command(root: Path, store: str, *args: str) -> tuple[int, dict[str, Any], str]:
    """``mxd --store STORE ARGS --json`` in a process of its own."""
    done = subprocess.run(
        [sys.executable, "-m", "mxd_cli", "--store", store, *args, "--json"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.stdout.strip(), done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


def counts(report: dict[str, Any], *names: str) -> dict[str, tuple[Any, ...]]:
    return {f["feature"]: tuple(f.get(n) for n in names) for f in report["features"]}


def test_the_quickstart_through_spark_connect_equals_duckdb(
    quickstart: Path, connect_url: str
) -> None:
    project = quickstart
    with_connect_store(project, connect_url)
    write = ("status", "new", "stale", "orphaned", "written", "deleted")
    seen = ("samples", "rows", "fingerprint")
    for step in ("first run", "an edited price"):
        if step == "an edited price":
            csv = project / "data" / "products.csv"
            csv.write_text(csv.read_text().replace(",119.00,", ",109.00,"))
        reports = {s: command(project, s, "materialize") for s in ("dev", "connect")}
        for store, (code, report, stderr) in reports.items():
            assert code == 0, (step, store, report)
            assert "Warning" not in stderr, stderr  # (no warnings leak from the client)
        assert counts(reports["dev"][1], *write) == counts(reports["connect"][1], *write), step
    code, observed, _ = command(project, "connect", "observe")
    assert code == 0, observed
    code, duck, _ = command(project, "dev", "observe")
    assert counts(observed, *seen) == counts(duck, *seen)  # the same ids and data versions
    code, deleted, _ = command(
        project, "connect", "delete", "shop/products", "--filter", "price > 100", "--yes"
    )
    assert code == 0 and counts(deleted, "matched", "deleted")["shop/products"] == (3, 3)
    code, status, _ = command(project, "connect", "status")
    assert counts(status, "stored", "new")["shop/products"] == (5, 3)


def test_an_executor_asset_runs_on_the_executors_through_spark_connect(
    make_project: Any, connect_url: str
) -> None:
    config = f"""\
project = "t"
entrypoints = ["pipeline"]
store = "connect"
[stores.connect]
type = "spark"
[stores.connect.config]
remote = "{connect_url}"
"""
    root = make_project(EXECUTORS, config=config)
    values = [f"v{i}" for i in range(20)]
    ids = [f"s{i:02d}" for i in range(20)]
    pl.DataFrame({"id": ids, "value": values}).write_csv(root / "data.csv")
    code, report, _ = command(root, "connect", "materialize")
    assert code == 0, report
    assert counts(report, "written")["demo/clean"] == (20,)
    read = (
        "import json; from mxd_cli import api; "
        "f = api.read(api.Project.load(), 'demo/clean', columns=['value', 'pid']); "
        "print(json.dumps({'values': sorted(f['value'].to_list()), "
        "'pids': f['pid'].n_unique()}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", read], cwd=root, capture_output=True, text=True, timeout=300
    )
    found = json.loads(done.stdout)
    assert found["values"] == sorted(v.upper() for v in values)
    assert found["pids"] > 1  # the first chunk in the client, the rest in Python workers
    edited = [f"w{i}" if i < 6 else "boom" if i == 17 else v for i, v in enumerate(values)]
    pl.DataFrame({"id": ids, "value": edited}).write_csv(root / "data.csv")
    code, report, _ = command(root, "connect", "materialize")
    assert code == 1, report
    (clean,) = [f for f in report["features"] if f["feature"] == "demo/clean"]
    assert clean["error"].endswith(
        "asset 'clean' of demo/clean raised ValueError: cannot clean boom"
    ), clean["error"]
    assert clean["error"].count("pipeline.py:") == 1  # (where, said once)
