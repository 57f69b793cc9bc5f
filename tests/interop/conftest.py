"""Fixtures of the interop tests: the Metaxy environments, a driver per session, tallies.

Building an environment the first time takes about a minute (pip, from PyPI); later runs
reuse it (see environments.py). A failed build is an error of the tests that need it, in
CI as anywhere: nothing here skips.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.interop import environments
from tests.interop.differential import Tally
from tests.interop.metaxy_process import MetaxyProcess

TALLIES: dict[str, Tally] = {}


@pytest.fixture(scope="session")
def metaxy_env() -> environments.Environment:
    return environments.ensure(environments.metaxy_recipe())


@pytest.fixture(scope="session")
def mxd_metaxy_env() -> environments.Environment:
    return environments.ensure(environments.mxd_metaxy_recipe())


@pytest.fixture(scope="session")
def metaxy(
    metaxy_env: environments.Environment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MetaxyProcess]:
    log = tmp_path_factory.mktemp("metaxy") / "driver.log"
    driver = MetaxyProcess(metaxy_env.python, log)
    yield driver
    driver.close()


def tally(backend: str) -> Tally:
    return TALLIES.setdefault(backend, Tally())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for backend, counts in sorted(TALLIES.items()):
        terminalreporter.write_line(f"interop differential ({backend}): {counts.summary()}")
