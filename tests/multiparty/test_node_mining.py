"""Transactions a node accepts but does not mine at once (a real Anvil process).

Anvil's automine can leave a ready transaction in its pool while several parties
send at once (CI saw a client's withdrawRewards wait there until Ape gave up after
20 s), and a node without automine never mines by itself. `FLContract._send` then
takes the receipt from a block it asks the dev chain to mine, instead of failing
the party. Here automine is switched off on a real Anvil to put a transaction in
exactly that state.
"""
from __future__ import annotations

import pytest

from ml.chain import ChainError, ClientStatus, FLContract, JobParams, _tx_hash, wait_until_mined
from tests.conftest import default_params
from tests.multiparty.harness import on_anvil

pytestmark = [pytest.mark.anvil]


def _automine(on: bool) -> None:
    from ape import chain

    chain.provider.make_request("evm_setAutomine", [on])


def test_unmined_transaction_is_mined_and_counted(anvil):
    from ape import accounts, chain

    with on_anvil(anvil):
        admin, agg, client = (accounts.test_accounts[i] for i in (0, 1, 2))
        fl = FLContract.deploy(admin, JobParams(**default_params()), admin.address, agg.address)
        stake = fl.params().minStake
        _automine(False)
        try:
            height = chain.blocks.height
            receipt = fl.register(client, b"\x44" * 32, stake)  # Ape hands back a receipt outside any block
            assert receipt.block_number > height and receipt.status == 1
            assert fl.client(client.address).status == ClientStatus.ACTIVE
            assert fl.meter.gas["register"] == receipt.gas_used > 0

            fl.request_exit(client)  # the next transaction of the same account: its nonce follows
            assert fl.client(client.address).status == ClientStatus.EXITING
            assert chain.blocks.height == height + 2
            with pytest.raises(ChainError, match=r"withdrawStake by .* reverted with StillUnbonding"):
                fl.withdraw_stake(client)
        finally:
            _automine(True)


def test_transaction_that_never_appears_fails_clearly(anvil):
    with on_anvil(anvil):
        with pytest.raises(ChainError, match=r"ping failed with TransactionNotMined\(tx=0x0{64}\).*local node mines"):
            wait_until_mined("ping", "0x" + "00" * 32, wait=1)


def test_tx_hash_is_read_from_apes_timeout_error():
    from ape.exceptions import TransactionNotFoundError

    h = "0x" + "ab" * 32
    assert _tx_hash(TransactionNotFoundError(h, "is not in the chain after 20 seconds"), "x") == h
    with pytest.raises(ChainError, match="x failed with TransactionNotFoundError"):
        _tx_hash(TransactionNotFoundError(None, "gone"), "x")


def test_a_transaction_takes_a_few_node_calls_and_its_events_decode(anvil):
    """The direct path: estimateGas, nonce, sendRawTransaction, receipt (the fee cached on a dev chain);
    Ape's path took twelve, among them a trace_transaction after every one."""
    from ape import accounts

    from ml.rpcproxy import RpcProxy

    with RpcProxy(anvil, max_range=None) as proxy, on_anvil(proxy.url):
        admin, agg, client = (accounts.test_accounts[i] for i in range(3))
        fl = FLContract.deploy(admin, JobParams(**default_params()), admin.address, agg.address)
        fl.register(client, b"\x44" * 32, fl.params().minStake)
        proxy.counts.clear()
        receipt = fl.top_up(client, 5)
        assert receipt.status == 1 and receipt.gas_used == fl.meter.gas["topUp"] > 0
        (ev,) = receipt.events
        assert ev.event_name == "StakeToppedUp" and ev.amount == 5 and ev.client == client.address
        assert "trace_transaction" not in proxy.counts
        assert sum(proxy.counts.values()) <= 4, proxy.counts
        # A revert still comes back by name (the estimate fails; Ape's path decodes it).
        with pytest.raises(ChainError, match=r"withdrawStake by .* reverted with NotExiting"):
            fl.withdraw_stake(client)
