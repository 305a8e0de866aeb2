"""Stateful property test: random sequences of every external call against a Python model.

Each action asks the model for the outcome it expects: either the custom error
the contract must revert with (asserted with `ape.reverts`, so expected reverts
are exercised too), or the new state (the transaction is sent, its events and
the touched records compared with the model). After every step the invariants
are checked against the chain:

- contract balance == totalStaked + totalOwed + totalAllocated + rewardPool + treasuryOwed
  + totalBonded + forced ether (hence balance >= the accounted sum), each term equal to the model;
- no reward is claimed twice (a second claim must revert, the model pays once);
- the sum paid for a round never exceeds its reward;
- a slash never exceeds the stake;
- round phases only move forward (None -> Open -> Finalized | Failed | Cancelled).

The job runs in trusted-aggregator mode (no verifier committee): proposeRound applies its
outcome at once, so Proposed is never observed after a transaction. Its verdict lists must be
strictly ascending by address, with one non-zero reason code per rejected client; the sensible
rules send them so, `chaos` sometimes does not. Bonds can still be posted and withdrawn (they
count in the accounting), and the committee's calls (attest, dispute, expireProposal) revert.

Most rules pick arguments that make sense in the current state (an unregistered
client registers, an eligible client submits, ...), because on the embedded
chain a transaction costs tens of milliseconds and the example budget is
small; the `chaos` rule calls any action with arbitrary arguments, which is
where most expected reverts come from. Boundary times (deadline, grace period,
unbonding, each +-1 s) are targeted by `wait_until_boundary`.

Every example starts from the same chain snapshot, a job with some history
(round 1 finalized with a rejected update, a claim made, an aggregator bond, round 2 open), and
rolls back at its end. Timestamps are explicit: each transaction runs at model
time + 1 s.
"""
from __future__ import annotations

import copy
import os
from collections import Counter
from dataclasses import dataclass, field

import ape
import hypothesis.strategies as st
from eth_abi import encode
from eth_utils import keccak
from .fl_helpers import BPS, REASON_INVALID, ZERO32, Phase, UpdateStatus, ascending, key, set_time
from hypothesis import HealthCheck, settings
from hypothesis import event as _hypothesis_event
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

N_CLIENTS = 6
PARAMS = dict(
    minStake=10**17,
    unbondingPeriod=500,
    submissionPeriod=300,
    gracePeriod=200,
    quorum=2,
    maxUpdatesPerRound=4,
    maxSamplesPerUpdate=1000,
    slashBps=3333,
    rewardPerRound=10**18 + 7,  # odd: shares leave dust
)
INITIAL_MODEL = b"\x22" * 32

# CI default: 200 examples of up to 15 steps (override: FL_FUZZ_EXAMPLES / FL_FUZZ_STEPS).
MAX_EXAMPLES = int(os.environ.get("FL_FUZZ_EXAMPLES", "200"))
STEPS = int(os.environ.get("FL_FUZZ_STEPS", "15"))

# Trusted-aggregator mode: Open -> Proposed -> Finalized | Failed happens within proposeRound, so
# Proposed is never seen between transactions (it is not an allowed observation).
ALLOWED_TRANSITIONS = {
    (Phase.NONE, Phase.NONE),
    (Phase.NONE, Phase.OPEN),
    (Phase.OPEN, Phase.OPEN),
    (Phase.OPEN, Phase.FINALIZED),
    (Phase.OPEN, Phase.CANCELLED),
    (Phase.OPEN, Phase.FAILED),
    (Phase.FAILED, Phase.FAILED),
    (Phase.FINALIZED, Phase.FINALIZED),
    (Phase.CANCELLED, Phase.CANCELLED),
}

OUTCOMES: Counter = Counter()


def event(name: str) -> None:
    """Counts an outcome (printed at the end, checked for coverage) and tells Hypothesis."""
    OUTCOMES[name] += 1
    try:
        _hypothesis_event(name)
    except Exception:  # noqa: BLE001 - outside a Hypothesis example (building the base state)
        pass


# ------------------------------------------------------------------------ model


@dataclass
class ClientModel:
    stake: int = 0
    status: int = 0  # 0 None, 1 Active, 2 Exiting
    exit_at: int = 0
    last_round: int = 0
    counted_from: int = 0  # first round in which it counts toward "every client submitted"


@dataclass
class RoundModel:
    deadline: int
    base: bytes
    phase: int = Phase.OPEN
    updates: dict = field(default_factory=dict)  # address -> [samples, UpdateStatus]
    eligible: int = 0  # clients that could submit when the round started (minus those that left)
    eligible_submitted: int = 0
    rejected: int = 0
    excluded: int = 0
    claims: int = 0
    accepted_weight: int = 0
    reward: int = 0
    claimed: int = 0
    digest: bytes = ZERO32  # of the applied proposal (trusted mode: proposed and applied at once)
    model: bytes = ZERO32

    @property
    def submissions(self):
        return len(self.updates)

    @property
    def submitted_weight(self):
        return sum(s for s, _ in self.updates.values())


@dataclass
class State:
    now: int
    clients: dict  # address -> ClientModel
    rounds: dict = field(default_factory=dict)  # id -> RoundModel
    current: int = 0
    latest_model: bytes = INITIAL_MODEL
    active: int = 0
    eligible: int = 0  # active clients with at least the minimum stake
    pool: int = 0
    treasury: int = 0  # slashed stake owed to the treasury: never in the pool
    bonded: int = 0  # the aggregator's bond (the only account with AGGREGATOR_ROLE)
    staked: int = 0
    total_owed: int = 0
    allocated: int = 0
    balance: int = 0
    forced: int = 0  # ether forced in by selfdestruct (no accounting term covers it)
    owed: dict = field(default_factory=dict)
    used: list = field(default_factory=list)
    nonce: int = 0
    seen_phase: dict = field(default_factory=dict)
    paid: set = field(default_factory=set)


class TotalsReader:
    """Reads the seven scalar public variables checked after every step.

    A view call costs ~5 ms on the embedded chain (py-evm executes and rolls
    back a call), a storage read well under 1 ms, and this runs after every step
    of every example. The slots are discovered, not hard-coded: with every
    variable at a distinct non-zero value, each view's value must appear in
    exactly one of the first storage slots. Otherwise (a layout change, equal
    values) it falls back to view calls."""

    NAMES = ("totalStaked", "totalOwed", "totalAllocated", "rewardPool", "activeClients", "currentRound",
             "totalBonded")

    def __init__(self, chain, contract, caller):
        self.web3 = chain.provider.web3
        self.to = contract.address
        self.caller = caller.address
        self.selectors = {n: "0x" + keccak(text=f"{n}()")[:4].hex() for n in self.NAMES}
        self.slots = None
        self.backend = getattr(chain.provider, "evm_backend", None)
        self.to_bytes = bytes.fromhex(contract.address[2:])
        views = self._views()
        if 0 not in views.values() and len(set(views.values())) == len(views):
            words = [int.from_bytes(self.web3.eth.get_storage_at(self.to, i), "big") for i in range(64)]
            found = {n: [i for i, w in enumerate(words) if w == v] for n, v in views.items()}
            if all(len(f) == 1 for f in found.values()):
                self.slots = {n: f[0] for n, f in found.items()}
        assert self.read() == views

    def _views(self) -> dict:
        return {
            n: int.from_bytes(self.web3.eth.call({"to": self.to, "from": self.caller, "data": sel}), "big")
            for n, sel in self.selectors.items()
        }

    def read(self) -> dict:
        if self.slots is None:
            return self._views()
        if self.backend is not None:  # the embedded chain: read py-evm's state directly
            return {n: self.backend.get_storage(self.to_bytes, i) for n, i in self.slots.items()}
        return {n: int.from_bytes(self.web3.eth.get_storage_at(self.to, i), "big") for n, i in self.slots.items()}


class Driver:
    """Performs one action on chain and on the model, asserting they agree."""

    def __init__(self, state, env):
        self.s = state
        self.fl, self.chain, self.cl = env["fl"], env["chain"], env["clients"]
        self.aggregator, self.stranger, self.funder = env["aggregator"], env["stranger"], env["funder"]
        self.errors = env["errors"]
        self.chain_id = env["chain_id"]
        self.V = dict(sender=self.aggregator)  # views with a caller skip eth-tester's account lookup

    # ------------------------------------------------------------ helpers

    def tick(self):
        """The next transaction runs at now + 1 (also after a reverted one)."""
        self.s.now += 1
        set_time(self.chain, self.s.now)

    def expect(self, label, error, call, **kwargs):
        event(f"{label}: {error}")
        with ape.reverts(self.errors[error], **kwargs):
            call()

    def client(self, i):
        return self.cl[i], self.s.clients[self.cl[i].address]

    def round(self, rid=None):
        return self.s.rounds.get(self.s.current if rid is None else rid)

    def open_round(self):
        r = self.round()
        return r if r is not None and r.phase == Phase.OPEN else None

    def all_in(self, r):
        return (r.submissions > 0 and r.eligible_submitted >= r.eligible) or r.submissions >= PARAMS["maxUpdatesPerRound"]

    def check_client(self, c):
        rec = self.fl.getClient(c, **self.V)
        m = self.s.clients[c.address]
        assert (rec.stake, rec.status, rec.exitRequestedAt, rec.lastSubmittedRound) == (
            m.stake,
            m.status,
            m.exit_at,
            m.last_round,
        )

    def observe_phase(self, rid):
        """Round phases only move forward (checked whenever an action may move one)."""
        phase = self.fl.getRound(rid, **self.V).phase
        before = self.s.seen_phase.get(rid, Phase.NONE)
        assert (before, phase) in ALLOWED_TRANSITIONS, (rid, before, phase)
        assert phase == self.s.rounds[rid].phase
        self.s.seen_phase[rid] = phase

    def fresh_commitment(self):
        self.s.nonce += 1
        return keccak(text=f"fuzz-update-{self.s.nonce}")

    # ------------------------------------------------------------ actions

    def register(self, i, value):
        fl, s = self.fl, self.s
        c, m = self.client(i)
        self.tick()
        call = lambda: fl.register(key(i), sender=c, value=value)  # noqa: E731
        if m.status != 0:
            return self.expect("register", "AlreadyRegistered", call, client=c)
        if value < PARAMS["minStake"]:
            return self.expect("register", "InsufficientStake", call, sent=value, minimum=PARAMS["minStake"])
        tx = call()
        assert tx.events == [fl.ClientRegistered(c, value, key(i))]
        m.stake, m.status, m.exit_at = value, 1, 0
        m.counted_from = s.current + 1
        s.active += 1
        s.eligible += 1
        s.staked += value
        s.balance += value
        event("register: ok")

    def top_up(self, i, amount):
        fl, s = self.fl, self.s
        c, m = self.client(i)
        self.tick()
        call = lambda: fl.topUp(sender=c, value=amount)  # noqa: E731
        if m.status != 1:
            return self.expect("topUp", "NotActive", call, client=c)
        if amount == 0:
            return self.expect("topUp", "ZeroValue", call)
        tx = call()
        was_below = m.stake < PARAMS["minStake"]
        m.stake += amount
        if was_below and m.stake >= PARAMS["minStake"]:
            s.eligible += 1
            m.counted_from = s.current + 1
            event("topUp: back at the minimum")
        assert tx.events == [fl.StakeToppedUp(c, amount, m.stake)]
        s.staked += amount
        s.balance += amount
        event("topUp: ok")

    def request_exit(self, i):
        fl, s = self.fl, self.s
        c, m = self.client(i)
        self.tick()
        call = lambda: fl.requestExit(sender=c)  # noqa: E731
        if m.status != 1:
            return self.expect("requestExit", "NotActive", call, client=c)
        tx = call()
        assert tx.events == [fl.ExitRequested(c, s.now + PARAMS["unbondingPeriod"])]
        m.status, m.exit_at = 2, s.now
        s.active -= 1
        if m.stake >= PARAMS["minStake"]:
            s.eligible -= 1
            r = self.open_round()
            if r is not None and m.counted_from <= s.current:
                r.eligible -= 1
                if m.last_round == s.current:
                    r.eligible_submitted -= 1
                    event("requestExit: ok with an update pending")
        event("requestExit: ok")

    def withdraw_stake(self, i):
        fl, s = self.fl, self.s
        c, m = self.client(i)
        self.tick()
        call = lambda: fl.withdrawStake(sender=c)  # noqa: E731
        unlock = m.exit_at + PARAMS["unbondingPeriod"]
        if m.status != 2:
            return self.expect("withdrawStake", "NotExiting", call, client=c)
        if s.now < unlock:
            return self.expect("withdrawStake", "StillUnbonding", call, unlockTime=unlock)
        if m.last_round and self.round(m.last_round).phase in (Phase.OPEN, Phase.PROPOSED):
            return self.expect("withdrawStake", "UpdatePending", call, roundId=m.last_round)
        before = c.balance
        tx = call()
        assert tx.events == [fl.StakeWithdrawn(c, m.stake)]
        assert c.balance == before + m.stake - tx.total_fees_paid
        s.staked -= m.stake
        s.balance -= m.stake
        m.stake, m.status, m.exit_at = 0, 0, 0  # lastSubmittedRound is kept
        self.check_client(c)
        event("withdrawStake: ok")

    def start_round(self, by_stranger=False):
        fl, s = self.fl, self.s
        sender = self.stranger if by_stranger else self.aggregator
        self.tick()
        call = lambda: fl.startRound(sender=sender)  # noqa: E731
        if by_stranger:
            return self.expect("startRound", "AccessControlUnauthorizedAccount", call, account=sender)
        if self.open_round():
            return self.expect("startRound", "RoundStillOpen", call, roundId=s.current)
        tx = call()
        s.current += 1
        deadline = s.now + PARAMS["submissionPeriod"]
        assert tx.events == [fl.RoundStarted(s.current, s.latest_model, deadline)]
        s.rounds[s.current] = RoundModel(deadline=deadline, base=s.latest_model, eligible=s.eligible)
        self.observe_phase(s.current)
        event("startRound: ok")

    def submit(self, i, rid, com, samples):
        fl, s = self.fl, self.s
        c, m = self.client(i)
        self.tick()
        call = lambda: fl.submitUpdate(rid, com, samples, "", sender=c)  # noqa: E731
        r = self.round(rid)
        ex = lambda err, **kw: self.expect("submit", err, call, **kw)  # noqa: E731
        if m.status != 1:
            return ex("NotActive", client=c)
        if m.stake < PARAMS["minStake"]:
            return ex("StakeBelowMinimum", stake=m.stake, minimum=PARAMS["minStake"])
        if rid != s.current:
            return ex("NotCurrentRound", roundId=rid, current=s.current)
        if r is None or r.phase != Phase.OPEN:
            return ex("RoundNotOpen", roundId=rid)
        if s.now > r.deadline:
            return ex("DeadlinePassed", deadline=r.deadline)
        if c.address in r.updates:
            return ex("AlreadySubmitted", roundId=rid, client=c)
        if com == b"\x00" * 32:
            return ex("ZeroCommitment")
        if (c.address, com) in s.used:  # single-use per client
            return ex("CommitmentAlreadyUsed", commitment=com)
        if samples == 0:
            return ex("ZeroSamples")
        if samples > PARAMS["maxSamplesPerUpdate"]:
            return ex("TooManySamples", samples=samples, maximum=PARAMS["maxSamplesPerUpdate"])
        if r.submissions >= PARAMS["maxUpdatesPerRound"]:
            return ex("RoundFull", maxUpdates=PARAMS["maxUpdatesPerRound"])
        tx = call()
        assert tx.events == [fl.UpdateSubmitted(rid, c, com, samples, "")]
        r.updates[c.address] = [samples, UpdateStatus.SUBMITTED]
        s.used.append((c.address, com))
        m.last_round = rid
        if m.counted_from <= rid:
            r.eligible_submitted += 1
        event("submit: ok")

    def digest(self, rid, o):
        """outcomeDigest written out independently of the contract (abi.encode of the same fields)."""
        return keccak(encode(
            ["uint256", "address", "uint256", "bytes32", "address[]", "uint8[]", "address[]", "bytes32"],
            [self.chain_id, self.fl.address, rid, o["modelHash"], o["rejected"], o["reasons"], o["excluded"],
             o["evidenceHash"]]))

    def finalize(self, rid, rejected, excluded, zero_model_ok=True, reasons=None, sort=True):
        """proposeRound in trusted-aggregator mode: the outcome applies at once (like finalizing).

        With sort=True the lists are sent strictly ascending, as the contract wants them; otherwise
        in the given order (duplicates and all). `reasons` defaults to one valid code per rejection."""
        fl, s = self.fl, self.s
        if sort:
            rejected, excluded = ascending(rejected), ascending(excluded)
        rejected, excluded = list(rejected), list(excluded)
        reasons = [REASON_INVALID] * len(rejected) if reasons is None else list(reasons)
        model = keccak(text=f"fuzz-model-{rid}-{s.nonce}")
        r0 = self.round(rid)
        if zero_model_ok and r0 is not None and r0.submissions - len(rejected) - len(excluded) < PARAMS["quorum"]:
            model = ZERO32  # below the quorum an outcome carries no model: the round fails
        o = dict(modelHash=model, rejected=rejected, reasons=reasons, excluded=excluded,
                 evidenceHash=keccak(text=f"fuzz-evidence-{rid}-{s.nonce}"),
                 evidenceLocator=f"evidence-{rid}", modelLocator=f"model-{rid}")
        self.tick()
        call = lambda: fl.proposeRound(rid, o, sender=self.aggregator)  # noqa: E731
        ex = lambda err, **kw: self.expect("finalize", err, call, **kw)  # noqa: E731
        r = self.round(rid)
        if r is None or r.phase != Phase.OPEN:
            return ex("RoundNotOpen", roundId=rid)
        if s.now <= r.deadline and not self.all_in(r):
            return ex("DeadlineNotReached", deadline=r.deadline)
        # No bond is needed without a committee.
        if len(reasons) != len(rejected):
            return ex("ReasonsMismatch", rejected=len(rejected), reasons=len(reasons))
        status = {a: u[1] for a, u in r.updates.items()}
        prev = None
        for i, (a, why) in enumerate(zip(rejected, reasons)):
            if i and int(a, 16) <= int(prev, 16):
                return ex("VerdictsNotSorted", client=a)
            if status.get(a) != UpdateStatus.SUBMITTED:
                return ex("InvalidVerdict", client=a)
            if why == 0:
                return ex("ZeroReason", client=a)
            prev = a
        for i, a in enumerate(excluded):
            if i and int(a, 16) <= int(prev, 16):
                return ex("VerdictsNotSorted", client=a)
            if status.get(a) != UpdateStatus.SUBMITTED or a in rejected:  # not submitted, or both lists
                return ex("InvalidVerdict", client=a)
            prev = a
        for a in rejected:
            status[a] = UpdateStatus.REJECTED
        for a in excluded:
            status[a] = UpdateStatus.EXCLUDED
        accepted = r.submissions - len(rejected) - len(excluded)
        failed = accepted < PARAMS["quorum"]
        if failed and model != ZERO32:
            return ex("ModelBelowQuorum", accepted=accepted, quorum=PARAMS["quorum"])

        early = s.now <= r.deadline
        stakes_before = {a: s.clients[a].stake for a in rejected}
        tx = call()
        names = [log.event_name for log in tx.events]
        assert names == (["RoundProposed"] + ["UpdateRejected"] * len(rejected) + ["UpdateExcluded"] * len(excluded)
                         + ["RoundFailed" if failed else "RoundFinalized"]), names
        digest = self.digest(rid, o)
        proposed = [dict(log.event_arguments) for log in tx.events if log.event_name == "RoundProposed"]
        assert proposed == [dict(roundId=rid, digest=digest, modelHash=model, rejected=rejected, reasons=reasons,
                                 excluded=excluded, evidenceHash=o["evidenceHash"],
                                 evidenceLocator=o["evidenceLocator"], modelLocator=o["modelLocator"])]
        r.digest, r.model = digest, model
        slashes = [dict(log.event_arguments) for log in tx.events if log.event_name == "UpdateRejected"]
        assert [x["client"] for x in slashes] == rejected
        slashed_total = 0
        for a, why, x in zip(rejected, reasons, slashes):
            amount = stakes_before[a] * PARAMS["slashBps"] // BPS
            assert x["slashed"] == amount <= stakes_before[a]  # a slash never exceeds the stake
            assert x["stakeBefore"] == stakes_before[a]
            assert x["reason"] == why
            m = s.clients[a]
            if m.status == 1 and m.stake >= PARAMS["minStake"] > m.stake - amount:
                s.eligible -= 1
            m.stake -= amount
            slashed_total += amount
        assert [log.event_arguments["client"] for log in tx.events if log.event_name == "UpdateExcluded"] == excluded
        for a in rejected + excluded:
            r.updates[a][1] = status[a]
        weight = sum(n for n, st_ in r.updates.values() if st_ == UpdateStatus.SUBMITTED)
        s.staked -= slashed_total
        s.treasury += slashed_total  # to the treasury, never to the pool (H-1)
        r.rejected, r.excluded = len(rejected), len(excluded)
        if failed:
            r.phase = Phase.FAILED
            assert [log.event_arguments for log in tx.events if log.event_name == "RoundFailed"] == [
                dict(roundId=rid, accepted=accepted, rejected=len(rejected), excluded=len(excluded))]
            assert not [log for log in tx.events if log.event_name == "RoundFinalized"]
            for a in rejected:
                self.check_client(next(c for c in self.cl if c.address == a))
            self.observe_phase(rid)
            event(f"finalize: failed below the quorum ({len(rejected)} rejected, slashed all the same)")
            return
        reward = min(PARAMS["rewardPerRound"], s.pool)
        s.pool -= reward
        s.allocated += reward
        r.phase = Phase.FINALIZED
        r.rejected, r.excluded = len(rejected), len(excluded)
        r.accepted_weight, r.reward = weight, reward
        s.latest_model = model
        fin = [log for log in tx.events if log.event_name == "RoundFinalized"]
        assert fin == [fl.RoundFinalized(rid, model, accepted, weight, reward)]
        for a in rejected:
            self.check_client(next(c for c in self.cl if c.address == a))
        self.observe_phase(rid)
        event(f"finalize: ok{' early' if early else ''} ({len(rejected)} rejected, {len(excluded)} excluded)")

    def cancel(self, rid, by_aggregator):
        fl, s = self.fl, self.s
        sender = self.aggregator if by_aggregator else self.stranger
        self.tick()
        call = lambda: fl.cancelRound(rid, sender=sender)  # noqa: E731
        r = self.round(rid)
        if r is None or r.phase != Phase.OPEN:
            return self.expect("cancel", "RoundNotOpen", call, roundId=rid)
        cancel_time = r.deadline + PARAMS["gracePeriod"]
        if not by_aggregator and s.now <= cancel_time:
            return self.expect("cancel", "GracePeriodNotOver", call, cancelTime=cancel_time)
        tx = call()
        assert tx.events == [fl.RoundCancelled(rid, sender)]
        r.phase = Phase.CANCELLED
        self.observe_phase(rid)
        event(f"cancel: ok by {'the aggregator' if by_aggregator else 'anyone'}")

    def fund(self, amount):
        fl, s = self.fl, self.s
        self.tick()
        call = lambda: fl.fundRewards(sender=self.funder, value=amount)  # noqa: E731
        if amount == 0:
            return self.expect("fund", "ZeroValue", call)
        tx = call()
        assert tx.events == [fl.RewardsFunded(self.funder, amount)]
        s.pool += amount
        s.balance += amount
        event("fund: ok")

    def claim(self, i, rid):
        fl, s = self.fl, self.s
        c = self.cl[i]
        self.tick()
        call = lambda: fl.claimReward(rid, sender=c)  # noqa: E731
        r = self.round(rid)
        if r is None or r.phase != Phase.FINALIZED:
            return self.expect("claim", "RoundNotFinalized", call, roundId=rid)
        u = r.updates.get(c.address)
        if u is None or u[1] != UpdateStatus.SUBMITTED:
            label = "claim (again)" if u and u[1] == UpdateStatus.CLAIMED else "claim"
            return self.expect(label, "NothingToClaim", call, roundId=rid, client=c)
        assert (rid, c.address) not in s.paid  # no reward claimed twice
        amount = r.reward * u[0] // r.accepted_weight
        tx = call()
        assert tx.events == [fl.RewardClaimed(rid, c, amount)]
        s.paid.add((rid, c.address))
        u[1] = UpdateStatus.CLAIMED
        r.claimed += amount
        r.claims += 1
        s.allocated -= amount
        s.owed[c.address] = s.owed.get(c.address, 0) + amount
        s.total_owed += amount
        if r.claims == r.submissions - r.rejected - r.excluded:
            dust = r.reward - r.claimed
            s.allocated -= dust
            s.pool += dust
            event("claim: ok, the last one (dust to the pool)")
        onchain = fl.getRound(rid, **self.V)
        assert onchain.rewardClaimed == r.claimed <= onchain.reward  # paid <= reward
        event("claim: ok")

    def withdraw_rewards(self, i):
        fl, s = self.fl, self.s
        c = self.cl[i]
        amount = s.owed.get(c.address, 0)
        self.tick()
        call = lambda: fl.withdrawRewards(sender=c)  # noqa: E731
        if amount == 0:
            return self.expect("withdrawRewards", "NothingOwed", call, client=c)
        before = c.balance
        tx = call()
        assert tx.events == [fl.RewardsWithdrawn(c, amount)]
        assert c.balance == before + amount - tx.total_fees_paid
        s.owed[c.address] = 0
        s.total_owed -= amount
        s.balance -= amount
        event("withdrawRewards: ok")

    def post_bond(self, amount, by_stranger=False):
        fl, s = self.fl, self.s
        sender = self.stranger if by_stranger else self.aggregator
        self.tick()
        call = lambda: fl.postBond(sender=sender, value=amount)  # noqa: E731
        if by_stranger:
            return self.expect("postBond", "AccessControlUnauthorizedAccount", call, account=sender)
        if amount == 0:
            return self.expect("postBond", "ZeroValue", call)
        tx = call()
        s.bonded += amount
        assert tx.events == [fl.BondPosted(sender, amount, s.bonded)]
        s.balance += amount
        event("postBond: ok")

    def withdraw_bond(self, amount, by_stranger=False):
        """No proposal ever awaits a committee here, so ProposalPending cannot happen."""
        fl, s = self.fl, self.s
        sender = self.stranger if by_stranger else self.aggregator
        bond = 0 if by_stranger else s.bonded
        self.tick()
        call = lambda: fl.withdrawBond(amount, sender=sender)  # noqa: E731
        if amount == 0 or amount > bond:
            return self.expect("withdrawBond", "NothingOwed", call, client=sender)
        before = sender.balance
        tx = call()
        assert tx.events == [fl.BondWithdrawn(sender, amount)]
        assert sender.balance == before + amount - tx.total_fees_paid
        s.bonded -= amount
        s.balance -= amount
        event("withdrawBond: ok")

    def committee_call(self, which, rid, sender):
        """Without a committee nobody is a verifier, and no round is ever left Proposed."""
        fl = self.fl
        r = self.round(rid)
        digest = r.digest if r is not None else ZERO32
        self.tick()
        if which == "expireProposal":
            return self.expect(which, "NotProposed", lambda: fl.expireProposal(rid, sender=sender), roundId=rid)
        if which == "attest":
            o = dict(modelHash=r.model if r is not None else ZERO32, rejected=[], reasons=[], excluded=[],
                     evidenceHash=ZERO32, evidenceLocator="", modelLocator="")
            return self.expect(which, "NotVerifier", lambda: fl.attest(rid, o, sender=sender), account=sender)
        call = lambda: fl.dispute(rid, digest, sender=sender)  # noqa: E731
        return self.expect(which, "NotVerifier", call, account=sender)


# ------------------------------------------------------------------------- test


ERRORS = (
    "AlreadyRegistered InsufficientStake NotActive ZeroValue NotExiting StillUnbonding UpdatePending "
    "AccessControlUnauthorizedAccount RoundStillOpen StakeBelowMinimum NotCurrentRound RoundNotOpen "
    "DeadlinePassed AlreadySubmitted ZeroCommitment CommitmentAlreadyUsed ZeroSamples TooManySamples "
    "RoundFull DeadlineNotReached InvalidVerdict ModelBelowQuorum GracePeriodNotOver RoundNotFinalized "
    "NothingToClaim NothingOwed ReasonsMismatch VerdictsNotSorted ZeroReason NotVerifier NotProposed"
).split()


def _base_state(driver, chain):
    """A job with some history; every example starts here."""
    d = driver
    for i in range(4):
        d.register(i, PARAMS["minStake"] * (2 if i == 3 else 1))
    d.fund(15 * 10**17)  # round 1 takes 1 ETH: later rounds get min(rewardPerRound, pool) < rewardPerRound
    d.post_bond(3 * 10**17 + 11)  # not needed to propose without a committee, but counted
    d.start_round()
    for i, n in ((0, 10), (1, 20), (2, 30)):
        d.submit(i, 1, d.fresh_commitment(), n)
    d.s.now = d.round(1).deadline  # the next transaction runs just after the deadline
    d.finalize(1, [d.cl[2].address], [])  # client 2 slashed below the minimum stake
    d.claim(0, 1)
    d.start_round()
    d.submit(1, 2, d.fresh_commitment(), 40)


def test_stateful_fuzz(deploy, project, chain, clients, funder, aggregator, stranger):
    fl = deploy(**PARAMS, initialModelHash=INITIAL_MODEL)
    cl = clients[:N_CLIENTS]
    env = dict(
        fl=fl,
        chain=chain,
        clients=cl,
        aggregator=aggregator,
        stranger=stranger,
        funder=funder,
        errors={name: getattr(fl, name) for name in ERRORS},
        chain_id=chain.chain_id,
    )
    builder = Driver(State(now=chain.blocks.head.timestamp, clients={c.address: ClientModel() for c in cl}), env)
    _base_state(builder, chain)
    base = copy.deepcopy(builder.s)
    totals = TotalsReader(chain, fl, aggregator)
    addresses = [c.address for c in cl]

    def pick(data, candidates, label):
        """Mostly one of `candidates` (indexes that make sense now), sometimes anyone."""
        if candidates and data.draw(st.integers(0, 4), f"{label}: sensible"):
            return data.draw(st.sampled_from(candidates), label)
        return data.draw(st.integers(0, N_CLIENTS - 1), label)

    class FederatedLearningMachine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.snapshot = chain.snapshot()
            self.d = Driver(copy.deepcopy(base), env)

        def teardown(self):
            try:
                self.check_rounds()
            finally:
                chain.restore(self.snapshot)

        @property
        def s(self):
            return self.d.s

        def indexes(self, predicate):
            return [i for i, a in enumerate(addresses) if predicate(self.s.clients[a])]

        # ----------------------------------------------------- sensible rules

        @rule(amount=st.sampled_from([1, 10**15]))
        def force_ether(self, amount):
            """I-1: selfdestruct forces ether in; no rule may assume balance == the accounted sum."""
            # A fresh one each time: before Cancun (Ganache) selfdestruct also deletes the sender's code.
            self.d.tick()
            forcer = funder.deploy(project.ForceSend)
            self.d.tick()  # the deployment took a block at the previous time
            forcer.force(fl.address, sender=funder, value=amount)
            self.s.forced += amount
            self.s.balance += amount
            event("force: ether forced in")

        @precondition(lambda self: self.d.open_round() and self.d.open_round().updates)
        @rule(data=st.data())
        def malicious_aggregator(self, data):
            """Any verdict lists over the submitters, honest ones included: the slashes still go to the
            treasury (never the pool or a reward), each rejected update is slashed exactly once."""
            r = self.d.open_round()
            subs = list(r.updates)
            rejected = data.draw(st.lists(st.sampled_from(subs), unique=True), "rejected")
            rest = [a for a in subs if a not in rejected]
            excluded = data.draw(st.lists(st.sampled_from(rest), unique=True), "excluded") if rest else []
            n = len(rejected)
            reasons = data.draw(st.lists(st.integers(1, 255), min_size=n, max_size=n), "reasons")
            self.s.now = max(self.s.now, r.deadline)
            pool = self.s.pool
            self.d.finalize(self.s.current, rejected, excluded, reasons=reasons)  # sent sorted
            assert self.s.pool <= pool  # slashes never enter the pool
            event("malicious aggregator: verdicts applied")

        @precondition(lambda self: self.d.open_round() and self.d.open_round().updates)
        @rule(data=st.data())
        def malformed_verdicts(self, data):
            """Verdict lists in any order, repeated, naming anyone, with any reasons, after the deadline:
            VerdictsNotSorted, InvalidVerdict, ZeroReason or ReasonsMismatch (applied if valid by chance)."""
            r = self.d.open_round()
            anyone = list(r.updates) + addresses + [self.d.stranger.address]  # submitters weigh double
            rejected = data.draw(st.lists(st.sampled_from(anyone), max_size=4), "rejected")
            excluded = data.draw(st.lists(st.sampled_from(anyone), max_size=3), "excluded")
            n = len(rejected)
            codes = st.sampled_from([0, 1, REASON_INVALID, 255])
            one_each = st.lists(codes, min_size=n, max_size=n)
            reasons = data.draw(st.one_of(one_each, one_each, st.lists(codes, max_size=4)), "reasons")
            self.s.now = max(self.s.now, r.deadline)
            self.d.finalize(self.s.current, rejected, excluded, reasons=reasons, sort=False)

        @precondition(lambda self: self.indexes(lambda m: m.status == 0))
        @rule(data=st.data(), extra=st.sampled_from([0, 0, 1, 10**17, -1]))
        def register(self, data, extra):
            i = pick(data, self.indexes(lambda m: m.status == 0), "client")
            self.d.register(i, PARAMS["minStake"] + extra)

        @precondition(lambda self: self.indexes(lambda m: m.status == 1))
        @rule(data=st.data(), amount=st.sampled_from([1, 5 * 10**16, 10**17]))
        def top_up(self, data, amount):
            below = self.indexes(lambda m: m.status == 1 and m.stake < PARAMS["minStake"])
            i = pick(data, below or self.indexes(lambda m: m.status == 1), "client")
            self.d.top_up(i, amount)

        @precondition(lambda self: self.indexes(lambda m: m.status == 1))
        @rule(data=st.data())
        def request_exit(self, data):
            self.d.request_exit(pick(data, self.indexes(lambda m: m.status == 1), "client"))

        @precondition(lambda self: self.indexes(lambda m: m.status == 2))
        @rule(data=st.data())
        def withdraw_stake(self, data):
            i = pick(data, self.indexes(lambda m: m.status == 2), "client")
            m = self.s.clients[addresses[i]]
            unlock = m.exit_at + PARAMS["unbondingPeriod"]
            if m.status == 2 and self.s.now < unlock - 1 and data.draw(st.integers(0, 3), "wait for unbonding"):
                self.s.now = unlock - 1  # tick() moves to the unlock time
            self.d.withdraw_stake(i)

        @precondition(lambda self: not self.d.open_round())
        @rule()
        def start_round(self):
            self.d.start_round()

        def eligible(self):
            r = self.d.open_round()
            return self.indexes(
                lambda m: m.status == 1 and m.stake >= PARAMS["minStake"] and r and m.last_round != self.s.current
            )

        def can_submit(self):
            r = self.d.open_round()
            return r is not None and self.s.now < r.deadline

        @precondition(lambda self: self.can_submit())
        @rule(data=st.data(), samples=st.sampled_from([1, 7, 100, 999, 1000, 1, 7, 100, 999, 1000, 0, 1001]))
        def submit(self, data, samples):
            i = pick(data, self.eligible(), "client")
            self.d.submit(i, self.s.current, self.d.fresh_commitment(), samples)

        @precondition(lambda self: self.can_submit())
        @rule()
        def submit_all(self):
            """Every eligible client submits (drives rounds to "all in" and to the cap)."""
            for i in self.eligible():
                self.d.submit(i, self.s.current, self.d.fresh_commitment(), 10 * (i + 1))

        @precondition(lambda self: self.d.open_round())
        @rule(data=st.data())
        def finalize(self, data):
            """Distinct, disjoint verdicts over the submitters, mostly leaving the quorum."""
            r = self.d.open_round()
            subs = list(r.updates)
            room = max(len(subs) - PARAMS["quorum"], 0) + data.draw(st.sampled_from([0, 0, 0, 1]), "over")
            rejected = data.draw(st.lists(st.sampled_from(subs), max_size=room, unique=True), "rejected") if subs else []
            rest = [a for a in subs if a not in rejected]
            room -= len(rejected)
            excluded = data.draw(st.lists(st.sampled_from(rest), max_size=room, unique=True), "excluded") if rest else []
            if len(subs) < PARAMS["quorum"] and data.draw(st.integers(0, 3), "skip"):
                return  # mostly wait for enough submissions (QuorumNotReached is tried 1 in 4)
            if data.draw(st.integers(0, 3), "wait for the deadline") and self.s.now < r.deadline and not self.d.all_in(r):
                self.s.now = r.deadline  # tick() moves just past it
            self.d.finalize(self.s.current, rejected, excluded)

        @precondition(lambda self: self.d.open_round())
        @rule(by_aggregator=st.booleans(), data=st.data())
        def cancel(self, by_aggregator, data):
            cancel_time = self.d.open_round().deadline + PARAMS["gracePeriod"]
            if not by_aggregator and self.s.now < cancel_time and data.draw(st.integers(0, 3), "wait for grace"):
                self.s.now = cancel_time  # tick() moves just past it
            self.d.cancel(self.s.current, by_aggregator)

        def claimable(self):
            return [
                (i, rid)
                for rid, r in self.s.rounds.items()
                if r.phase == Phase.FINALIZED
                for i, a in enumerate(addresses)
                if a in r.updates and r.updates[a][1] == UpdateStatus.SUBMITTED
            ]

        @precondition(lambda self: self.claimable())
        @rule(data=st.data())
        def claim(self, data):
            i, rid = data.draw(st.sampled_from(self.claimable()), "claim")
            self.d.claim(i, rid)

        @precondition(lambda self: any(self.s.owed.values()))
        @rule(data=st.data())
        def withdraw_rewards(self, data):
            self.d.withdraw_rewards(pick(data, self.indexes_owed(), "client"))

        def indexes_owed(self):
            return [i for i, a in enumerate(addresses) if self.s.owed.get(a)]

        @rule(post=st.booleans(), data=st.data())
        def bond(self, post, data):
            """The aggregator posts to or withdraws from its bond (some of it, all of it, or too much)."""
            if post:
                self.d.post_bond(data.draw(st.sampled_from([1, 10**17]), "amount"))
            else:
                bonded = self.s.bonded
                self.d.withdraw_bond(data.draw(st.sampled_from([1, bonded, bonded + 1]), "amount"))

        @rule(dt=st.sampled_from([1, 10, 60, 120, 301, 501]))
        def wait(self, dt):
            self.s.now += dt

        @rule(
            which=st.sampled_from(["deadline", "grace", "unbonding"]),
            offset=st.sampled_from([-1, 0, 1]),
            data=st.data(),
        )
        def wait_until_boundary(self, which, offset, data):
            """The next transaction runs exactly at a boundary, or one second off."""
            r = self.d.round()
            exiting = self.indexes(lambda m: m.status == 2)
            if which == "deadline" and r is not None:
                t = r.deadline + offset
            elif which == "grace" and r is not None:
                t = r.deadline + PARAMS["gracePeriod"] + offset
            elif which == "unbonding" and exiting:
                m = self.s.clients[addresses[data.draw(st.sampled_from(exiting), "exiting")]]
                t = m.exit_at + PARAMS["unbondingPeriod"] + offset
            else:
                return
            if t - 1 > self.s.now:
                self.s.now = t - 1  # tick() moves to t
                event(f"time: at {which} {offset:+d}")

        # ------------------------------------------------------------ chaos

        @rule(data=st.data())
        def chaos(self, data):
            """Any action with arbitrary arguments (mostly expected reverts)."""
            s, d = self.s, self.d
            i = data.draw(st.integers(0, N_CLIENTS - 1), "client")
            rid = data.draw(st.integers(0, s.current + 1), "round")
            action = data.draw(
                st.sampled_from(
                    [
                        "register",
                        "top_up",
                        "request_exit",
                        "withdraw_stake",
                        "start_round",
                        "submit",
                        "finalize",
                        "cancel",
                        "fund",
                        "claim",
                        "withdraw_rewards",
                        "post_bond",
                        "withdraw_bond",
                        "attest",
                        "dispute",
                        "expireProposal",
                    ]
                ),
                "action",
            )
            if action == "register":
                d.register(i, data.draw(st.sampled_from([0, PARAMS["minStake"] - 1, PARAMS["minStake"]])))
            elif action == "top_up":
                d.top_up(i, data.draw(st.sampled_from([0, 1])))
            elif action == "request_exit":
                d.request_exit(i)
            elif action == "withdraw_stake":
                d.withdraw_stake(i)
            elif action == "start_round":
                d.start_round(by_stranger=data.draw(st.booleans()))
            elif action == "submit":
                kind = data.draw(st.sampled_from(["fresh", "reused", "zero"]), "commitment")
                if kind == "reused" and s.used:
                    com = data.draw(st.sampled_from(s.used))[1]  # this client's own, or another's (allowed)
                elif kind == "zero":
                    com = b"\x00" * 32
                else:
                    com = d.fresh_commitment()
                d.submit(i, rid, com, data.draw(st.sampled_from([0, 1, 1000, 1001, 2**64 - 1])))
            elif action == "finalize":
                everyone = addresses + [self.d.stranger.address]
                rejected = data.draw(st.lists(st.sampled_from(everyone), max_size=3), "rejected")
                excluded = data.draw(st.lists(st.sampled_from(everyone), max_size=3), "excluded")
                sort = data.draw(st.booleans(), "sorted")  # unsorted: VerdictsNotSorted (or valid by luck)
                r = d.open_round()
                if rid == s.current and r is not None and data.draw(st.booleans(), "past the deadline"):
                    s.now = max(s.now, r.deadline)  # so that the verdict checks are reached
                n = len(rejected)
                reasons = [REASON_INVALID] * n
                kind = data.draw(st.sampled_from(["valid"] * 4 + ["zero", "mismatch"]), "reasons")
                if kind == "zero" and n:
                    reasons[data.draw(st.integers(0, n - 1), "zero reason at")] = 0
                elif kind == "mismatch":
                    reasons = reasons[:-1] if n and data.draw(st.booleans(), "fewer") else reasons + [1]
                d.finalize(rid, rejected, excluded, zero_model_ok=data.draw(st.booleans(), "zero model"),
                           reasons=reasons, sort=sort)
            elif action == "cancel":
                d.cancel(rid, data.draw(st.booleans()))
            elif action == "fund":
                d.fund(data.draw(st.sampled_from([0, 1, 10**18])))
            elif action == "claim":
                d.claim(i, rid)
            elif action == "post_bond":
                d.post_bond(data.draw(st.sampled_from([0, 1])), by_stranger=data.draw(st.booleans()))
            elif action == "withdraw_bond":
                d.withdraw_bond(data.draw(st.sampled_from([0, 1, s.bonded + 1])), by_stranger=data.draw(st.booleans()))
            elif action in ("attest", "dispute", "expireProposal"):
                d.committee_call(action, rid, data.draw(st.sampled_from([d.cl[i], d.aggregator, d.stranger])))
            else:
                d.withdraw_rewards(i)

        # ------------------------------------------------------- invariants

        @invariant()
        def accounting(self):
            s = self.s
            balance = chain.provider.get_balance(fl.address)
            t = totals.read()
            staked, owed, allocated, pool = t["totalStaked"], t["totalOwed"], t["totalAllocated"], t["rewardPool"]
            treasury = fl.treasuryOwed(**self.d.V)
            bonded = t["totalBonded"]
            assert treasury == s.treasury  # every slash went there; none reached the pool or a reward
            assert balance == staked + owed + allocated + pool + treasury + bonded + s.forced
            assert balance >= staked + owed + allocated + pool + treasury + bonded
            assert (balance, staked, owed, allocated, pool, bonded) == (
                s.balance,
                s.staked,
                s.total_owed,
                s.allocated,
                s.pool,
                s.bonded,
            )
            assert t["activeClients"] == s.active
            assert t["currentRound"] == s.current

        def check_rounds(self):
            """End of an example: every round record and the model hash."""
            V = self.d.V
            assert fl.latestModelHash(**V) == self.s.latest_model
            assert fl.bondOf(aggregator, **V) == self.s.bonded
            assert fl.totalBurned(**V) == 0  # the job has a treasury: nothing is burned
            for rid, r in self.s.rounds.items():
                rr = fl.getRound(rid, **V)
                assert rr.phase == r.phase
                assert (self.s.seen_phase.get(rid, Phase.NONE), rr.phase) in ALLOWED_TRANSITIONS
                assert rr.baseModelHash == r.base and rr.deadline == r.deadline
                assert rr.submissions == r.submissions and rr.submittedWeight == r.submitted_weight
                assert (rr.rejected, rr.excluded, rr.claims) == (r.rejected, r.excluded, r.claims)
                assert rr.acceptedWeight == r.accepted_weight and rr.reward == r.reward
                assert rr.rewardClaimed == r.claimed <= rr.reward
                if r.phase in (Phase.FINALIZED, Phase.FAILED):  # proposed (and applied at once)
                    p = fl.getProposal(rid, **V)
                    assert (p.digest, p.modelHash, p.proposer) == (r.digest, r.model, aggregator.address)
                    assert (p.attestations, p.disputes) == (0, 0)

    OUTCOMES.clear()
    run_state_machine_as_test(
        FederatedLearningMachine,
        settings=settings(
            max_examples=MAX_EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    print("\nstateful test outcomes:")
    for name, n in sorted(OUTCOMES.items()):
        print(f"{n:6d}  {name}")
    if MAX_EXAMPLES >= 100:  # the search reached the interesting paths
        for must in ("finalize: ok", "claim: ok", "withdrawStake: ok", "withdrawRewards: ok", "cancel: ok", "submit: ok"):
            assert any(k.startswith(must) for k in OUTCOMES), f"never reached: {must}"
