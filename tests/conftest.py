"""Shared fixtures: roles as Ape test accounts, a deployed job with default parameters."""
from __future__ import annotations

import pytest

ETHER = 10**18
MIN_STAKE = ETHER // 10  # 0.1 ETH
UNBONDING = 3600
SUBMISSION = 600
GRACE = 300
REWARD = ETHER  # 1 ETH per round
SLASH_BPS = 5000
MAX_SAMPLES = 10_000


def default_params(**overrides) -> dict:
    """Constructor parameters of FederatedLearning as a dict (Ape encodes it as the Params tuple)."""
    params = dict(
        minStake=MIN_STAKE,
        unbondingPeriod=UNBONDING,
        submissionPeriod=SUBMISSION,
        gracePeriod=GRACE,
        quorum=1,
        maxUpdatesPerRound=0,
        maxSamplesPerUpdate=MAX_SAMPLES,
        slashBps=SLASH_BPS,
        rewardPerRound=REWARD,
        normBound=0,
        modelSpecHash=b"\x11" * 32,
        initialModelHash=b"\x22" * 32,
        aggregatorKey=b"\x33" * 32,
    )
    params.update(overrides)
    return params


@pytest.fixture(scope="session")
def admin(accounts):
    return accounts[0]


@pytest.fixture(scope="session")
def aggregator(accounts):
    return accounts[1]


@pytest.fixture(scope="session")
def funder(accounts):
    return accounts[2]


@pytest.fixture(scope="session")
def clients(accounts):
    return [accounts[i] for i in range(3, 13)]


@pytest.fixture(scope="session")
def stranger(accounts):
    return accounts[19]


@pytest.fixture
def deploy(project, admin, aggregator):
    """Deploys a job; keyword arguments override the default parameters."""

    def _deploy(**overrides):
        return admin.deploy(project.FederatedLearning, default_params(**overrides), admin, aggregator)

    return _deploy


@pytest.fixture
def fl(deploy):
    return deploy()
