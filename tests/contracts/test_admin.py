"""Admin: setAggregatorKey and role management (OpenZeppelin AccessControl)."""
import ape
import pytest
from ape.exceptions import VirtualMachineError
from .fl_helpers import AGGREGATOR_ROLE, DEFAULT_ADMIN_ROLE, ZERO32

NEW_KEY = b"\x77" * 32


def test_set_aggregator_key(fl, admin):
    tx = fl.setAggregatorKey(NEW_KEY, sender=admin)
    assert tx.events == [fl.AggregatorKeyChanged(NEW_KEY)]
    assert fl.params().aggregatorKey == NEW_KEY


@pytest.mark.parametrize("who", ["aggregator", "stranger"])
def test_set_aggregator_key_requires_admin(fl, aggregator, stranger, who):
    account = aggregator if who == "aggregator" else stranger
    with ape.reverts(fl.AccessControlUnauthorizedAccount, account=account, neededRole=DEFAULT_ADMIN_ROLE):
        fl.setAggregatorKey(NEW_KEY, sender=account)


def test_set_aggregator_key_zero(fl, admin):
    with ape.reverts(fl.ZeroEncryptionKey):
        fl.setAggregatorKey(ZERO32, sender=admin)


def test_set_aggregator_key_not_while_round_open(fl, admin, aggregator, clients, register, submit, finalize, start_round):
    start_round()
    with ape.reverts(fl.RoundStillOpen, roundId=1):
        fl.setAggregatorKey(NEW_KEY, sender=admin)
    fl.cancelRound(1, sender=aggregator)
    fl.setAggregatorKey(NEW_KEY, sender=admin)  # after a cancel
    register(clients[0])
    start_round()
    with ape.reverts(fl.RoundStillOpen, roundId=2):
        fl.setAggregatorKey(b"\x78" * 32, sender=admin)
    submit(clients[0])
    finalize()
    fl.setAggregatorKey(b"\x78" * 32, sender=admin)  # after a finalize
    assert fl.params().aggregatorKey == b"\x78" * 32


def test_other_params_fixed(fl, admin, make_params):
    fl.setAggregatorKey(NEW_KEY, sender=admin)
    expected = make_params(aggregatorKey=NEW_KEY)
    p = fl.params()
    for name, value in expected.items():
        assert getattr(p, name) == value


def test_admin_rotates_aggregator(fl, admin, aggregator, accounts):
    new = accounts[13]
    tx = fl.grantRole(AGGREGATOR_ROLE, new, sender=admin)
    assert fl.RoleGranted(AGGREGATOR_ROLE, new, admin) in tx.events
    fl.revokeRole(AGGREGATOR_ROLE, aggregator, sender=admin)
    with ape.reverts(fl.AccessControlUnauthorizedAccount, account=aggregator, neededRole=AGGREGATOR_ROLE):
        fl.startRound(sender=aggregator)
    fl.startRound(sender=new)
    # the old aggregator lost its privilege to cancel before the grace period, too
    deadline = fl.getRound(1).deadline
    with ape.reverts(fl.GracePeriodNotOver, cancelTime=deadline + fl.params().gracePeriod):
        fl.cancelRound(1, sender=aggregator)
    fl.cancelRound(1, sender=new)


def test_only_admin_grants_roles(fl, aggregator, stranger):
    with ape.reverts(fl.AccessControlUnauthorizedAccount, account=aggregator, neededRole=DEFAULT_ADMIN_ROLE):
        fl.grantRole(AGGREGATOR_ROLE, stranger, sender=aggregator)
    assert fl.getRoleAdmin(AGGREGATOR_ROLE) == DEFAULT_ADMIN_ROLE


def test_aggregator_renounces(fl, aggregator):
    fl.renounceRole(AGGREGATOR_ROLE, aggregator, sender=aggregator)
    assert not fl.hasRole(AGGREGATOR_ROLE, aggregator)
    with ape.reverts(fl.AccessControlUnauthorizedAccount):
        fl.startRound(sender=aggregator)


def test_contract_rejects_plain_ether(fl, stranger):
    """No receive/fallback: ether only enters through register, topUp and fundRewards."""
    # A revert without data: a ContractLogicError on py-evm and Anvil, a plain
    # VirtualMachineError ("VM Exception ... revert") on Ganache.
    with pytest.raises(VirtualMachineError):
        stranger.transfer(fl, 1)
    assert fl.balance == 0
