"""Confirmations and reorgs on a real Anvil: a party acts on a round once its start is under the configured
number of blocks, and a submission a reorg dropped (anvil_rollback) is sent again, same blob and commitment."""
from __future__ import annotations

import pytest

from ml.chain import Phase, UpdateStatus
from ml.parties import ClientOptions, ClientParty, deploy_job, load_npz, make_deploy_config, open_job, split_dataset
from tests.multiparty.harness import on_anvil
from tests.nodes import rpc

pytestmark = [pytest.mark.anvil]


def test_round_acted_on_after_confirmations_and_dropped_submission_sent_again(anvil, tmp_path):
    from ape import accounts, chain

    with on_anvil(anvil):
        files = split_dataset("digits", 2, tmp_path / "data", seed=0)
        cfg = make_deploy_config({"submission_period": "1h", "quorum": 1})
        deps = tmp_path / "deployments.json"
        admin, agg, member = accounts.test_accounts[0], accounts.test_accounts[1], accounts.test_accounts[2]
        deploy_job(admin, cfg, aggregator=str(agg.address), key_file=tmp_path / "agg.key",
                   store=str(tmp_path / "store"), deployments=deps, log=lambda m: None)
        job = open_job(deps, confirmations=2)
        assert open_job(deps).fl.confirmations == 0  # a dev chain's default
        fl = job.fl
        logs: list[str] = []
        client = ClientParty(member, job, *load_npz(files["clients"][0]), ClientOptions(rounds=1, poll=0.01,
                                                                                         max_poll=0.01),
                             log=logs.append)
        client._ensure_registered()

        fl.start_round(agg)
        assert fl.current_round() == 1 and fl.current_round(confirmed=True) == 0  # not under 2 blocks yet
        chain.mine(2)
        assert fl.current_round(confirmed=True) == 1
        view = fl.round_view(1, client.address, confirmed=True)
        client._take_part(1, view.round, view)
        u = fl.update(1, member.address)
        assert u.status == UpdateStatus.SUBMITTED and 1 in client.unconfirmed

        # A reorg drops the block holding the submission (Anvil forgets its transaction).
        rpc(anvil, "anvil_rollback", [1])
        assert fl.update(1, member.address).status == UpdateStatus.NONE
        assert client._dropped() == [1]
        client._resend_dropped()
        again = fl.update(1, member.address)
        assert again.status == UpdateStatus.SUBMITTED and again.commitment == u.commitment
        assert any("was dropped by a reorg; sent it again" in m for m in logs), logs
        assert job.store.get(u.commitment)  # the same blob, still in the store

        chain.mine(2)
        assert client._dropped() == [] and not client.unconfirmed  # under 2 blocks: final
        assert fl.round(1).phase == Phase.OPEN and fl.can_propose(1, confirmed=True)
