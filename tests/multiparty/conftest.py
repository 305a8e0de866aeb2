"""Fixtures of the multi-party tests (helpers in harness.py)."""
from __future__ import annotations

import pytest

from tests.multiparty.harness import Parties, anvil_node


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, the report shows every party's output (also kept in tmp_path/<party>.log)."""
    outcome = yield
    rep = outcome.get_result()
    ps = getattr(item, "_chainfl_parties", None)
    if rep.failed and ps is not None and rep.when in ("call", "setup"):
        rep.sections.append((f"party processes (logs in {ps.tmp})", ps.logs()))


@pytest.fixture
def anvil():
    with anvil_node() as url:
        yield url


@pytest.fixture
def parties(tmp_path, anvil, request, project):
    # The parent process compiles the project if needed, so the parties (with an empty data folder) never do.
    assert project.FederatedLearning.contract_type.name == "FederatedLearning"
    ps = Parties(tmp_path, anvil)
    request.node._chainfl_parties = ps
    try:
        yield ps
    finally:
        ps.stop_all()
