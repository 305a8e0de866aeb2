"""Differential-privacy parameters on chain: validated at deployment, the budget enforced by startRound."""
import ape
import pytest

from ml.dp import epsilon, max_rounds

from .fl_helpers import ZERO32

C, Z, DELTA = 1_000_000, 1_500_000, 10**13  # C = 1.0, z = 1.5, delta = 1e-5 (fixed point)
SEED = b"\x5e" * 32


@pytest.mark.parametrize(
    "overrides, reason",
    [
        (dict(dpNoise=Z), "DP settings without dpClip"),
        (dict(dpDelta=DELTA), "DP settings without dpClip"),
        (dict(dpBudget=1, dpMaxRounds=1), "DP settings without dpClip"),
        (dict(dpClip=C, dpNoise=Z), "dpDelta must be in (0, 1e18)"),
        (dict(dpClip=C, dpNoise=Z, dpDelta=10**18, dpSeedCommitment=SEED), "dpDelta must be in (0, 1e18)"),
        (dict(dpClip=C, dpNoise=Z, dpDelta=DELTA), "dpSeedCommitment iff dpNoise"),
        (dict(dpClip=C, dpDelta=DELTA, dpSeedCommitment=SEED), "dpSeedCommitment iff dpNoise"),
        (dict(dpClip=C, dpNoise=Z, dpDelta=DELTA, dpSeedCommitment=SEED, dpBudget=3_000_000),
         "dpMaxRounds iff dpBudget"),
        (dict(dpClip=C, dpNoise=Z, dpDelta=DELTA, dpSeedCommitment=SEED, dpMaxRounds=4), "dpMaxRounds iff dpBudget"),
    ],
)
def test_dp_params_are_checked_at_deployment(project, deploy, overrides, reason):
    with ape.reverts(project.FederatedLearning.InvalidParams, reason=reason):
        deploy(**overrides)


def test_dp_params_are_public(deploy):
    fl = deploy(dpClip=C, dpNoise=Z, dpDelta=DELTA, dpSeedCommitment=SEED, dpBudget=4_000_000, dpMaxRounds=7)
    p = fl.params()
    assert (p.dpClip, p.dpNoise, p.dpDelta, p.dpBudget, p.dpMaxRounds) == (C, Z, DELTA, 4_000_000, 7)
    assert p.dpSeedCommitment == SEED
    plain = deploy().params()
    assert (plain.dpClip, plain.dpNoise, plain.dpMaxRounds, plain.dpSeedCommitment) == (0, 0, 0, ZERO32)


def test_start_round_stops_at_the_budget(deploy, aggregator, stranger):
    """dpMaxRounds rounds start (a cancelled one counts: it could have published a model), not one more."""
    fl = deploy(dpClip=C, dpNoise=Z, dpDelta=DELTA, dpSeedCommitment=SEED, dpBudget=9_000_000, dpMaxRounds=2)
    fl.startRound(sender=aggregator)
    fl.cancelRound(1, sender=aggregator)
    fl.startRound(sender=aggregator)
    fl.cancelRound(2, sender=aggregator)
    with ape.reverts(fl.PrivacyBudgetSpent, maxRounds=2):
        fl.startRound(sender=aggregator)
    assert fl.currentRound() == 2


def test_max_rounds_written_out_by_hand():
    """The number deploy writes on chain: the last round count whose epsilon is within the budget."""
    z, delta = 1.5, 1e-5
    eps = [epsilon(z, r, 1.0, delta) for r in (1, 2, 3, 4, 5)]
    assert eps == sorted(eps) and len(set(eps)) == 5
    budget = (eps[2] + eps[3]) / 2  # between three and four rounds
    assert max_rounds(z, delta, budget) == 3
    assert max_rounds(z, delta, eps[2]) == 3  # exactly three rounds' epsilon still fits
    assert max_rounds(z, delta, eps[0] * 0.99) == 0
