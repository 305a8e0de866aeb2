"""Gas used by every FederatedLearning function, and how it scales.

    .venv/bin/python -m bench.gas                      # Anvil (started and stopped here)
    .venv/bin/python -m bench.gas --quick              # small sizes: checks only (CI)
    .venv/bin/python -m bench.gas --network ethereum:local:test   # embedded py-evm
    .venv/bin/python -m bench.gas --sizes 10,100 --out /tmp/r     # custom sizes / folder

Prints a table and writes <out>/gas.json (gas_quick.json with --quick; out is
bench/results by default). Measured from receipts (gas_used, which includes
the 21000 base and calldata), one fresh deployment per scenario.

- functions: every external function once (first and later calls where the
  first one turns storage from zero to non-zero), in trusted-aggregator mode
  (no committee: proposeRound applies its outcome at once, like finalizing);
- proposeRound (trusted) with 0, 10 and 50 rejected, 10 and 50 excluded: O(verdicts);
- committee: k = 3 verifiers, threshold m = 2: postBond, proposeRound with 0, 10,
  50 and 999 rejected (only the outcome's digest is stored; each attestation
  carries the outcome as calldata), attest (the first, and the m-th that applies
  the outcome from its calldata; both must fit a block for a full round), dispute
  (the k - m + 1-th fails the round and forfeits the bond), expireProposal,
  withdrawBond;
- scaling: N clients register, all submit to one round, it is proposed (trusted)
  and claimed; register, submitUpdate, proposeRound (no verdicts) and claimReward
  must cost the same for N = 10, 100 and 1000 (the contract never loops over
  clients). The run fails (exit 1) if any of them grows.

Clients beyond the 20 test accounts are impersonated on Anvil (no signing); on
the embedded chain they are generated test accounts. The whole run takes about
5 minutes on Anvil, most of it the 1000 clients.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from ml.chain import JobParams

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
MIN_STAKE = 10**17
ETHER = 10**18
PARAMS = asdict(JobParams(  # the DP and private-mode fields keep JobParams' defaults (off)
    minStake=MIN_STAKE,
    unbondingPeriod=3600,
    submissionPeriod=600,
    gracePeriod=300,
    quorum=1,
    maxUpdatesPerRound=0,
    maxSamplesPerUpdate=10_000,
    slashBps=5000,
    rewardPerRound=ETHER,
    normBound=0,
    modelSpecHash=b"\x11" * 32,
    initialModelHash=b"\x22" * 32,
    aggregatorKey=b"\x33" * 32,
    treasury="0x7eA5000000000000000000000000000000007eA5",  # slashes go here (a non-zero one: the costly path)
    permissioned=False,
    attestationPeriod=600,
    aggregatorBond=ETHER,
))
NO_COMMITTEE = dict(verifiers=[], keys=[], threshold=0)  # trusted-aggregator mode
ADMIN_DELAY = 3600
BLOCK_GAS_LIMIT = 30_000_000
MAX_UPDATES_PER_ROUND = 1000  # the contract's bound


def _nonzero(i: int, width: int) -> bytes:
    """`i` in base 255 with digits 1..255: unique and without zero bytes, so
    calldata costs the same for every client (a zero byte costs 4 gas, others 16)."""
    digits = []
    for _ in range(width):
        i, d = divmod(i, 255)
        digits.append(d + 1)
    assert i == 0
    return bytes(reversed(digits))


def _key(i: int) -> bytes:
    return _nonzero(i, 4) + b"\x01" * 28


def _commitment(round_id: int, i: int) -> bytes:
    return _nonzero(round_id, 2) + _nonzero(i, 4) + b"\x07" * 26


REASON = 6  # any non-zero reason code (ml/evidence.py)


def _outcome(model: bytes, rejected=(), excluded=(), evidence: bytes = b"\x00" * 32, locator: str = "") -> dict:
    """proposeRound's Outcome: verdict lists strictly ascending by address, one reason per rejection."""
    def asc(xs):
        return sorted((getattr(x, "address", x) for x in xs), key=lambda a: int(a, 16))

    rej = asc(rejected)
    return dict(modelHash=model, rejected=rej, reasons=[REASON] * len(rej), excluded=asc(excluded),
                evidenceHash=evidence, evidenceLocator="", modelLocator=locator)


class Bench:
    def __init__(self, ape, network_choice: str):
        self.ape = ape
        self.chain = ape.chain
        self.project = ape.project
        self.accounts = ape.accounts
        self.network_choice = network_choice
        test = list(self.accounts.test_accounts)
        self.admin, self.aggregator, self.funder = test[0], test[1], test[2]
        self.base_clients = test[3:19]
        self.extra: list = []
        self.rows: list[dict] = []

    # ------------------------------------------------------------ helpers

    def record(self, section: str, name: str, receipt, note: str = "") -> int:
        gas = int(receipt.gas_used)
        self.rows.append(dict(section=section, function=name, gas=gas, note=note))
        return gas

    def deploy(self, committee=None, **overrides):
        params = dict(PARAMS, **overrides)
        return self.admin.deploy(self.project.FederatedLearning, params, committee or NO_COMMITTEE, self.admin,
                                 self.aggregator, ADMIN_DELAY)

    def propose(self, fl, rid, model, rejected=(), excluded=(), with_outcome=False):
        o = _outcome(model, rejected, excluded)
        tx = fl.proposeRound(rid, o, sender=self.aggregator)
        return (tx, o) if with_outcome else tx

    def clients(self, n: int) -> list:
        """n funded client accounts (test accounts first, then extra ones)."""
        while len(self.base_clients) + len(self.extra) < n:
            self.extra.append(self._new_client(len(self.extra)))
        return (self.base_clients + self.extra)[:n]

    def _new_client(self, i: int, label: str = "bench-client"):
        provider = self.chain.provider
        if provider.name == "foundry":
            from eth_utils import keccak, to_checksum_address

            address = to_checksum_address(keccak(text=f"{label}-{i}")[:20])
            provider.set_balance(address, 10 * ETHER)
            return self.accounts.test_accounts.impersonate_account(address)  # unsigned eth_sendTransaction
        account = self.accounts.test_accounts.generate_test_account()
        self.funder.transfer(account, ETHER, required_confirmations=0)
        return account

    def past(self, timestamp: int) -> None:
        self.chain.pending_timestamp = max(timestamp + 1, self.chain.blocks.head.timestamp + 1)

    def round_with(self, fl, clients, samples=100):
        fl.startRound(sender=self.aggregator)
        rid = fl.currentRound()
        receipts = [fl.submitUpdate(rid, _commitment(rid, i), samples, "", sender=c) for i, c in enumerate(clients)]
        return rid, receipts

    # ---------------------------------------------------------- scenarios

    def functions(self):
        s = "functions"
        t0 = time.time()
        fl = self.deploy()
        self.record(s, "(deployment)", self.chain.get_receipt(fl.txn_hash))
        a, b, c = self.base_clients[:3]
        self.record(s, "register", fl.register(_key(1), sender=a, value=MIN_STAKE), "first client")
        self.record(s, "register", fl.register(_key(2), sender=b, value=MIN_STAKE), "later client")
        fl.register(_key(3), sender=c, value=MIN_STAKE)
        self.record(s, "topUp", fl.topUp(sender=a, value=MIN_STAKE))
        self.record(s, "fundRewards", fl.fundRewards(sender=self.funder, value=10 * ETHER), "first funding")
        self.record(s, "fundRewards", fl.fundRewards(sender=self.funder, value=ETHER), "later funding")
        self.record(s, "startRound", fl.startRound(sender=self.aggregator), "first round")
        self.record(s, "submitUpdate", fl.submitUpdate(1, _commitment(1, 0), 100, "", sender=a), "first of the round")
        self.record(s, "submitUpdate", fl.submitUpdate(1, _commitment(1, 1), 200, "", sender=b), "later")
        long_locator = "ipfs://" + "b" * 59
        self.record(
            s, "submitUpdate", fl.submitUpdate(1, _commitment(1, 2), 300, long_locator, sender=c), "66-byte locator"
        )
        self.record(s, "proposeRound", self.propose(fl, 1, b"\x44" * 32), "trusted, all in, 0 rejected")
        self.record(s, "claimReward", fl.claimReward(1, sender=a), "first claim")
        self.record(s, "claimReward", fl.claimReward(1, sender=b), "middle claim")
        self.record(s, "claimReward", fl.claimReward(1, sender=c), "last claim (returns dust)")
        self.record(s, "withdrawRewards", fl.withdrawRewards(sender=a))
        self.record(s, "startRound", fl.startRound(sender=self.aggregator), "later round")
        self.record(s, "cancelRound", fl.cancelRound(2, sender=self.aggregator), "by the aggregator")
        self.record(s, "setAggregatorKey", fl.setAggregatorKey(b"\x55" * 32, sender=self.admin))
        self.record(s, "requestExit", fl.requestExit(sender=b))
        self.past(fl.getClient(b).exitRequestedAt + PARAMS["unbondingPeriod"])
        self.record(s, "withdrawStake", fl.withdrawStake(sender=b))
        # A round below the quorum (here: its only update rejected) fails; the slash goes to the treasury.
        fl.startRound(sender=self.aggregator)
        fl.submitUpdate(3, _commitment(3, 0), 100, "", sender=a)
        self.past(fl.getRound(3).deadline)
        self.record(s, "proposeRound", self.propose(fl, 3, b"\x00" * 32, [a]),
                    "trusted, below the quorum: Failed, 1 rejected")
        self.record(s, "withdrawTreasury", fl.withdrawTreasury(sender=self.funder))
        self.record(s, "grantRole", fl.grantRole(fl.AGGREGATOR_ROLE(), c, sender=self.admin), "between rounds")
        pl = self.deploy(permissioned=True)
        self.record(s, "admit", pl.admit(c, 100, sender=self.admin), "permissioned job")
        self.record(s, "register", pl.register(_key(9), sender=c, value=MIN_STAKE), "permissioned, admitted")
        # A client's claims of several rounds in one transaction (what `ape run client` sends).
        mr = self.deploy()
        mr.register(_key(1), sender=a, value=MIN_STAKE)
        mr.fundRewards(sender=self.funder, value=10 * ETHER)
        for r in range(1, 5):
            mr.startRound(sender=self.aggregator)
            mr.submitUpdate(r, _commitment(r, 0), 100, "", sender=a)
            self.propose(mr, r, bytes([0x60 + r]) * 32)
        self.record(s, "claimRewards", mr.claimRewards([1], sender=a), "1 round")
        self.record(s, "claimRewards", mr.claimRewards([2, 3, 4], sender=a), "3 rounds in one transaction")
        print(f"  functions: {time.time() - t0:.1f}s", file=sys.stderr)

    def verdicts(self, cases=((0, 0), (10, 0), (50, 0), (0, 10), (0, 50), (10, 10))):
        s = "proposeRound"
        for rejected, excluded in cases:
            t0 = time.time()
            n = min(rejected + excluded + 1, MAX_UPDATES_PER_ROUND)
            rejected = min(rejected, n - 1 - excluded)  # cl[0] is always accepted
            fl = self.deploy()
            fl.fundRewards(sender=self.funder, value=10 * ETHER)
            cl = self.clients(n)
            for i, c in enumerate(cl):
                fl.register(_key(i), sender=c, value=MIN_STAKE)
            rid, _ = self.round_with(fl, cl)
            rej = cl[1 : 1 + rejected]
            exc = cl[1 + rejected : 1 + rejected + excluded]
            model = b"\x44" * 32 if n - rejected - excluded >= PARAMS["quorum"] else b"\x00" * 32
            tx = self.propose(fl, rid, model, rej, exc)
            self.record(s, "proposeRound", tx, f"{rejected} rejected, {excluded} excluded")
            print(f"  propose {rejected}/{excluded}: {time.time() - t0:.1f}s", file=sys.stderr)

    def committee(self, k: int = 3, m: int = 2, rejections=(0, 10, 50)):
        """A job with k verifiers and threshold m: bonds, proposals (only their digest kept), votes."""
        s = "committee"
        t0 = time.time()
        verifiers = [self._new_client(i, "bench-verifier") for i in range(k)]
        c = dict(verifiers=[v.address for v in verifiers],
                 keys=[_nonzero(i + 1, 4) + b"\x02" * 28 for i in range(k)], threshold=m)
        fl = self.deploy(committee=c)
        self.record(s, "(deployment)", self.chain.get_receipt(fl.txn_hash), f"k={k} verifiers, m={m}")
        fl.fundRewards(sender=self.funder, value=10 * ETHER)
        cl = self.clients(max(rejections) + 1)  # cl[0] is always accepted
        for i, x in enumerate(cl):
            fl.register(_key(i), sender=x, value=MIN_STAKE)
        bond = PARAMS["aggregatorBond"]
        self.record(s, "postBond", fl.postBond(sender=self.aggregator, value=bond), "first bond")
        self.record(s, "postBond", fl.postBond(sender=self.aggregator, value=bond), "adding to a bond")
        model = b"\x44" * 32
        # Applied by the m-th attestation, with each number of rejected updates.
        for n_rej in rejections:
            group = cl[: n_rej + 1]
            rid, _ = self.round_with(fl, group)
            if len(group) < len(cl):  # not all in: proposable after the deadline
                self.past(fl.getRound(rid).deadline)
            tx, o = self.propose(fl, rid, model, group[1:], with_outcome=True)
            self.record(s, "proposeRound", tx, f"{len(group)} submitted, {n_rej} rejected: only the digest kept")
            for j in range(m):
                tx = fl.attest(rid, o, sender=verifiers[j])
                if j == m - 1:
                    self.record(s, "attest", tx, f"the m-th: applies the outcome, {n_rej} rejected")
                elif j == 0:
                    self.record(s, "attest", tx, f"non-final (1st of m), {n_rej} rejected (calldata)")
            assert fl.getRound(rid).phase == 3  # Finalized
            for x in group[1:]:  # the slashed ones top up, to submit again
                fl.topUp(sender=x, value=MIN_STAKE - fl.getClient(x).stake)
            print(f"  committee {n_rej} rejected: {time.time() - t0:.1f}s", file=sys.stderr)
        # Failed by the (k - m + 1)-th dispute: the bond is forfeited to the treasury. Only cl[0] submits,
        # so the round is proposable after its deadline.
        rid, _ = self.round_with(fl, cl[:1])
        self.past(fl.getRound(rid).deadline)
        self.propose(fl, rid, model)
        for j in range(k - m + 1):
            tx = fl.dispute(rid, b"\x66" * 32, sender=verifiers[j])
            if j == 0 and k - m + 1 > 1:
                self.record(s, "dispute", tx, "non-final (1st)")
        self.record(s, "dispute", tx, f"the last (k - m + 1 = {k - m + 1}): fails the round, forfeits the bond")
        assert fl.getRound(rid).phase == 4  # Failed
        # Nobody votes: after the attestation period anyone cancels the round.
        rid, _ = self.round_with(fl, cl[:1])
        self.past(fl.getRound(rid).deadline)
        self.propose(fl, rid, model)
        self.past(fl.getProposal(rid).proposedAt + PARAMS["attestationPeriod"])
        self.record(s, "expireProposal", fl.expireProposal(rid, sender=self.funder), "nobody voted: Cancelled")
        self.record(s, "withdrawBond", fl.withdrawBond(fl.bondOf(self.aggregator), sender=self.aggregator),
                    "all of it")
        print(f"  committee k={k} m={m}: {time.time() - t0:.1f}s", file=sys.stderr)

    def scaling(self, sizes):
        s = "scaling"
        for n in sizes:
            t0 = time.time()
            fl = self.deploy()
            fl.fundRewards(sender=self.funder, value=10 * ETHER)
            cl = self.clients(n)
            regs = [fl.register(_key(i), sender=c, value=MIN_STAKE) for i, c in enumerate(cl)]
            self.record(s, "register", regs[-1], f"{n}th client")
            rid, subs = self.round_with(fl, cl)
            self.record(s, "submitUpdate", subs[-1], f"{n}th update of the round")
            self.record(s, "proposeRound", self.propose(fl, rid, b"\x44" * 32), f"{n} submitted, 0 rejected")
            self.record(s, "claimReward", fl.claimReward(rid, sender=cl[0]), f"first of {n} claims")
            if n > 2:
                self.record(s, "claimReward", fl.claimReward(rid, sender=cl[n // 2]), f"a middle one of {n} claims")
            print(f"  scaling n={n}: {time.time() - t0:.1f}s", file=sys.stderr)

    def check_constant(self):
        """register / submit / propose / claim must not grow with the number of clients."""
        problems = []
        by_note: dict[str, list[int]] = {}
        for r in self.rows:
            if r["section"] == "scaling":
                kind = r["function"] + (" (first claim)" if r["note"].startswith("first") else "")
                by_note.setdefault(kind, []).append(r["gas"])
        for kind, values in by_note.items():
            if max(values) - min(values) > 0:
                problems.append(f"{kind}: {values}")
        return problems


def _table(rows, problems, network):
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"FederatedLearning gas ({network})")
    table.add_column("section")
    table.add_column("function")
    table.add_column("gas", justify="right")
    table.add_column("note")
    last = None
    for r in rows:
        if last is not None and r["section"] != last:
            table.add_section()
        last = r["section"]
        table.add_row(r["section"], r["function"], f"{r['gas']:,}", r["note"])
    console = Console()
    console.print(table)
    if problems:
        console.print("[bold red]grows with the number of clients:[/] " + "; ".join(problems))
    else:
        console.print("[green]register, submitUpdate, proposeRound and claimReward do not grow with N[/]")


def _solc_version(ape):
    try:
        return str(ape.project.config.solidity.version)
    except Exception:  # noqa: BLE001 - informative only
        return None


class _QuietFastApe:
    """Inside this block Ape logs warnings only and skips two costs that do not
    change results: the replay of every transaction to print console.log lines
    (the contract has none), and re-deriving the test accounts from the mnemonic
    (pure-Python HD derivation) whenever it checks whether an address is one.
    Everything is restored on exit (the bench orchestrator runs other parts in
    the same process)."""

    def __enter__(self):
        import functools

        import ape_ethereum.provider
        import ape_test.accounts
        from ape.logging import logger

        self.saved = [
            (ape_ethereum.provider, "_post_send_transaction", ape_ethereum.provider._post_send_transaction),
            (ape_test.accounts, "generate_dev_accounts", ape_test.accounts.generate_dev_accounts),
        ]
        self.logger, self.level = logger, logger.level
        logger.set_level("WARNING")
        ape_ethereum.provider._post_send_transaction = lambda txn, receipt: None
        ape_test.accounts.generate_dev_accounts = functools.lru_cache(maxsize=1024)(
            ape_test.accounts.generate_dev_accounts
        )
        return self

    def __exit__(self, *exc):
        for module, name, value in self.saved:
            setattr(module, name, value)
        self.logger.set_level(self.level)
        return False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", default="ethereum:local:foundry")
    parser.add_argument("--quick", action="store_true", help="small sizes (10, 40), fewer verdict cases: checks only")
    parser.add_argument("--sizes", default=None, help="client counts of the scaling section (default 10,100,1000)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    default_sizes = "10,40" if args.quick else "10,100,1000"
    sizes = [int(x) for x in (args.sizes or default_sizes).split(",") if x]
    # The last full case is the bound: a full round (MAX_UPDATES_PER_ROUND updates), every one rejected.
    cases = ((0, 0), (10, 0), (0, 10)) if args.quick else (
        (0, 0), (10, 0), (50, 0), (0, 10), (0, 50), (10, 10), (MAX_UPDATES_PER_ROUND, 0))

    os.chdir(ROOT)  # the Ape project is the current directory
    venv_bin = str(ROOT / ".venv" / "bin")
    if venv_bin not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"  # anvil
    import ape

    started = time.time()
    with _QuietFastApe(), ape.networks.parse_network_choice(args.network) as provider:
        bench = Bench(ape, args.network)
        bench.functions()
        bench.verdicts(cases)
        bench.committee(rejections=(0, 10) if args.quick else (0, 10, 50, MAX_UPDATES_PER_ROUND - 1))
        bench.scaling(sizes)
        problems = bench.check_constant()
        chain_id = provider.chain_id
    _table(bench.rows, problems, args.network)

    worst = max((r for r in bench.rows if r["section"] == "proposeRound"), key=lambda r: r["gas"])
    fits = worst["gas"] < BLOCK_GAS_LIMIT
    print(f"largest verdict list measured: proposeRound {worst['note']}: {worst['gas']:,} gas, "
          f"{worst['gas'] / BLOCK_GAS_LIMIT:.2f} of a 30M block")
    if not fits:
        problems.append(f"proposeRound with {worst['note']} needs {worst['gas']:,} gas, above a 30M block")
    committee_worst = max((r for r in bench.rows if r["section"] == "committee" and r["function"] != "(deployment)"),
                          key=lambda r: r["gas"])
    print(f"largest committee transaction: {committee_worst['function']} {committee_worst['note']}: "
          f"{committee_worst['gas']:,} gas, {committee_worst['gas'] / BLOCK_GAS_LIMIT:.2f} of a 30M block")
    if committee_worst["gas"] >= BLOCK_GAS_LIMIT:
        problems.append(f"{committee_worst['function']} {committee_worst['note']} needs {committee_worst['gas']:,} gas, "
                        "above a 30M block")
    out = Path(args.out) / ("gas_quick.json" if args.quick else "gas.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    result = dict(
        target="register, submitUpdate, claimReward and proposeRound (no verdicts) constant in the number "
        "of clients; proposeRound linear in rejected + excluded",
        verdict=("constant in N=" + ",".join(map(str, sizes))) if not problems else "GROWS: " + "; ".join(problems),
        network=args.network,
        chain_id=chain_id,
        solc=_solc_version(ape),
        sizes=sizes,
        constant_in_clients=not problems,
        problems=problems,
        largest_verdicts=dict(note=worst["note"], gas=worst["gas"], block_fraction=round(worst["gas"] / BLOCK_GAS_LIMIT, 3)),
        largest_committee_tx=dict(function=committee_worst["function"], note=committee_worst["note"],
                                  gas=committee_worst["gas"],
                                  block_fraction=round(committee_worst["gas"] / BLOCK_GAS_LIMIT, 3)),
        seconds=round(time.time() - started, 1),
        rows=bench.rows,
    )
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
