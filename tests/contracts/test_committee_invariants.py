"""Stateful property test of the committee round lifecycle (issue 11): k = 3 verifiers, m = 2.

Each example draws the committee's nature: every verifier is honest, or (at most one of them)
"dispute_all" (disputes every proposal) or "attest_all" (attests whatever is proposed), so at
least m verifiers are always honest. Four clients are registered with stake. The rules start
rounds, let clients submit (the test decides which submissions are "bad"), let the aggregator
propose either the honest outcome (it rejects exactly the bad submissions) or a malicious one
(it rejects or excludes an honest client, spares a bad one, or names another model), let the
verifiers vote according to their nature (an honest verifier attests exactly the honest outcome
and disputes anything else with the honest outcome's digest), move time, and expire proposals.

The expected state is written out by hand in a Python model (slash = stake * 3333 // 10000 to
the treasury; the m-th = 2nd attestation applies the outcome; the (k - m + 1)-th = 2nd dispute
fails the round and forfeits min(bond, aggregatorBond); an expired proposal cancels the round and
applies nothing), and each transaction's expected revert or events are asserted against it. After
every step:

- contract balance == accounted(fl) == the model's balance, and every accounting term as modelled;
- every client's stake as modelled: no honest client is ever slashed (nor excluded) while at least
  m verifiers are honest, and a bad one only by an applied honest outcome;
- a round is Finalized only with at least m attestations (the proposal's counter and the votes);
- a proposal is applied (slashes, exclusions, a model) only if it is the honest one: a malicious
  proposal never finalizes;
- the aggregator's bond shrinks only on the (k - m + 1)-th dispute, by exactly the forfeit, which
  goes to the treasury.

Every example starts from the same chain snapshot (job deployed, clients registered, rewards
funded, bond posted) and rolls back at its end. Each transaction runs at model time + 1 s.
"""
from __future__ import annotations

import copy
import os
from collections import Counter
from dataclasses import dataclass, field

import ape
import hypothesis.strategies as st
import pytest
from eth_abi import encode
from eth_utils import keccak
from hypothesis import HealthCheck, settings
from hypothesis import event as _hypothesis_event
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from .fl_helpers import REASON_INVALID, ZERO32, Phase, UpdateStatus, accounted, ascending, outcome, set_time

ETH = 10**18
K, M = 3, 2
DISPUTES_TO_FAIL = K - M + 1  # 2
MIN_STAKE = ETH // 10
SUBMISSION = 600
ATTESTATION = 300
QUORUM = 2
SLASH_BPS = 3333  # not a divisor of the stakes: the slash rounds down
BOND = ETH
REWARD = ETH
FUNDING = 3 * ETH
INITIAL_BOND = 3 * ETH // 2  # one forfeit leaves 0.5 ETH: below the bond, so the aggregator must top it up
INITIAL_MODEL = b"\x22" * 32
STAKES = (3 * MIN_STAKE, 2 * MIN_STAKE, 3 * MIN_STAKE // 2, 5 * MIN_STAKE // 2)

# ~60-90 s on two busy cores (override: FL_COMMITTEE_EXAMPLES / FL_COMMITTEE_STEPS).
MAX_EXAMPLES = int(os.environ.get("FL_COMMITTEE_EXAMPLES", "20"))
STEPS = int(os.environ.get("FL_COMMITTEE_STEPS", "16"))

ERRORS = (
    "NotProposed ProposalExpired ProposalNotExpired AlreadyVoted DigestMismatch DisputeMatchesProposal "
    "NotVerifier BondTooLow DeadlineNotReached"
).split()

OUTCOMES: Counter = Counter()


def event(name: str) -> None:
    """Counts an outcome (printed at the end, with -s) and tells Hypothesis."""
    OUTCOMES[name] += 1
    try:
        _hypothesis_event(name)
    except Exception:  # noqa: BLE001 - outside a Hypothesis example
        pass


# ------------------------------------------------------------------------ model


@dataclass
class RoundModel:
    deadline: int
    eligible: int  # clients that could submit when the round started
    phase: int = Phase.OPEN
    samples: dict = field(default_factory=dict)  # client -> samples
    bad: set = field(default_factory=set)  # submitters whose update the test made invalid
    eligible_submitted: int = 0
    honest: dict | None = None  # the honest outcome (fixed when the aggregator proposes)
    proposal: dict | None = None  # what the aggregator proposed
    kind: str = ""  # "honest" or the malicious variant
    digest: bytes = ZERO32
    proposed_at: int = 0
    votes: dict = field(default_factory=dict)  # verifier -> "attest" | "dispute"
    applied: bool = False  # the proposal's verdicts took effect
    forfeited: int = 0

    @property
    def attestations(self):
        return sum(v == "attest" for v in self.votes.values())

    @property
    def disputes(self):
        return sum(v == "dispute" for v in self.votes.values())


@dataclass
class State:
    now: int
    stake: dict  # client -> stake
    rounds: dict = field(default_factory=dict)
    current: int = 0
    latest_model: bytes = INITIAL_MODEL
    eligible: int = 0  # clients with at least the minimum stake (all are active)
    counted_from: dict = field(default_factory=dict)  # client -> first round it counts toward "all in"
    staked: int = 0
    pool: int = 0
    allocated: int = 0
    treasury: int = 0
    bond: int = 0
    balance: int = 0
    nonce: int = 0


def by_hand_digest(chain_id, fl_address, rid, o) -> bytes:
    """keccak(abi.encode(chainid, contract, round, model, rejected, reasons, excluded, evidence))."""
    return keccak(encode(
        ["uint256", "address", "uint256", "bytes32", "address[]", "uint8[]", "address[]", "bytes32"],
        [chain_id, fl_address, rid, o["modelHash"], o["rejected"], o["reasons"], o["excluded"], o["evidenceHash"]]))


class StorageReader:
    """Reads the per-step values from storage: a view call costs ~15 ms through Ape (several per step
    add up to most of the runtime), a storage read well under 1 ms.

    The slots are discovered, not hard-coded (like TotalsReader in test_invariants.py): totalStaked is
    the one slot among the first 64 holding its (distinct) value, and the totals declared after it
    follow in declaration order; a mapping's base slot p is the one where keccak(key . p) holds the
    value of its view. Every slot is checked against the views here, and the per-step values against
    the views again whenever money or a phase moves and at the end of every example."""

    TOTALS = ("totalStaked", "totalOwed", "totalAllocated", "rewardPool", "treasuryOwed", "totalBurned",
              "totalBonded")  # consecutive uint256 state variables in FederatedLearning.sol

    def __init__(self, chain, fl, aggregator, clients):
        self.web3 = chain.provider.web3
        self.fl = fl
        self.address = fl.address
        self.backend = getattr(chain.provider, "evm_backend", None)
        self.address_bytes = bytes.fromhex(fl.address[2:])
        V = dict(sender=aggregator)
        staked = fl.totalStaked(**V)
        words = [self.word(i) for i in range(64)]
        assert words.count(staked) == 1, "totalStaked is not a distinct value: cannot find its slot"
        first = words.index(staked)
        self.totals = {name: first + i for i, name in enumerate(self.TOTALS)}
        assert self.read_totals() == {name: getattr(fl, name)(**V) for name in self.TOTALS}
        self.bond_slot = self.mapping_slot(aggregator.address, fl.bondOf(aggregator, **V))
        self.client_slot = self.mapping_slot(clients[0].address, fl.getClient(clients[0], **V).stake)
        for c in clients:  # the client struct's first word is its stake
            assert self.word(self.key(c.address, self.client_slot)) == fl.getClient(c, **V).stake

    @staticmethod
    def key(address, base):
        return int.from_bytes(keccak(encode(["address", "uint256"], [address, base])), "big")

    def mapping_slot(self, address, value):
        assert value != 0
        found = [p for p in range(64) if self.word(self.key(address, p)) == value]
        assert len(found) == 1, f"cannot find the mapping slot holding {value}"
        return found[0]

    def word(self, slot) -> int:
        if self.backend is not None:  # the embedded chain: read py-evm's state directly
            return self.backend.get_storage(self.address_bytes, slot)
        return int.from_bytes(self.web3.eth.get_storage_at(self.address, slot), "big")

    def read_totals(self) -> dict:
        return {name: self.word(slot) for name, slot in self.totals.items()}

    def bond(self, aggregator) -> int:
        return self.word(self.key(str(getattr(aggregator, "address", aggregator)), self.bond_slot))

    def stake(self, client) -> int:
        return self.word(self.key(str(getattr(client, "address", client)), self.client_slot))


@pytest.fixture(scope="session")
def verifiers(accounts):
    return [accounts[13], accounts[14], accounts[15]]


def test_committee_lifecycle_invariants(deploy, chain, clients, verifiers, aggregator, funder, stranger):
    fl = deploy(verifiers=verifiers, threshold=M, minStake=MIN_STAKE, submissionPeriod=SUBMISSION,
                attestationPeriod=ATTESTATION, quorum=QUORUM, slashBps=SLASH_BPS, aggregatorBond=BOND,
                rewardPerRound=REWARD, initialModelHash=INITIAL_MODEL)
    assert fl.committee().threshold == M and len(fl.committee().verifiers) == K
    cl = list(clients[:len(STAKES)])
    for i, (c, amount) in enumerate(zip(cl, STAKES)):
        fl.register(keccak(text=f"committee-fuzz-key-{i}"), sender=c, value=amount)
    fl.fundRewards(sender=funder, value=FUNDING)
    fl.postBond(sender=aggregator, value=INITIAL_BOND)
    base = State(now=chain.blocks.head.timestamp, stake={c.address: a for c, a in zip(cl, STAKES)},
                 eligible=len(cl), counted_from={c.address: 1 for c in cl}, staked=sum(STAKES), pool=FUNDING,
                 bond=INITIAL_BOND, balance=sum(STAKES) + FUNDING + INITIAL_BOND)
    assert fl.balance == accounted(fl) == base.balance
    storage = StorageReader(chain, fl, aggregator, cl)
    errors = {name: getattr(fl, name) for name in ERRORS}
    chain_id = chain.chain_id
    addresses = [c.address for c in cl]
    account = {c.address: c for c in cl}
    V = dict(sender=aggregator)  # views with a caller skip eth-tester's account lookup

    class CommitteeMachine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            OUTCOMES["(state machines run)"] += 1
            self.snapshot = chain.snapshot()
            self.s = copy.deepcopy(base)
            self.nature = {v.address: "honest" for v in verifiers}
            self.seen_bond = INITIAL_BOND
            self.seen_treasury = 0
            self.posted = 0  # bond posted during the example
            self.dirty = True  # cross-check the storage reads with the views after this step

        def teardown(self):
            try:
                self.check_rounds()
            finally:
                chain.restore(self.snapshot)

        # ----------------------------------------------------------- helpers

        def tick(self):
            self.s.now += 1
            set_time(chain, self.s.now)

        def expect(self, label, error, call, **kwargs):
            event(f"{label}: {error}")
            with ape.reverts(errors[error], **kwargs):
                call()

        def round(self):
            return self.s.rounds.get(self.s.current)

        def phase_is(self, *phases):
            r = self.round()
            return r is not None and r.phase in phases

        def honest_verifiers(self):
            return sum(n == "honest" for n in self.nature.values())

        def all_in(self, r):
            return len(r.samples) > 0 and r.eligible_submitted >= r.eligible

        def can_submit(self):
            r = self.round()
            return [a for a in addresses if r is not None and r.phase == Phase.OPEN and self.s.now < r.deadline
                    and a not in r.samples and self.s.stake[a] >= MIN_STAKE]

        def verdict_outcome(self, rid, rejected, excluded, model=None, evidence=None):
            """An outcome over these verdicts, with a model exactly when the accepted updates reach the quorum."""
            r = self.s.rounds[rid]
            accepted = len(r.samples) - len(rejected) - len(excluded)
            if accepted < QUORUM:
                model = ZERO32
            elif model is None:
                model = keccak(text=f"committee-fuzz-model-{rid}")
            if evidence is None:
                evidence = keccak(text=f"committee-fuzz-evidence-{rid}-{','.join(ascending(rejected))}")
            return outcome(model, rejected, excluded, evidence=evidence, evidence_locator=f"ev-{rid}",
                           locator=f"model-{rid}")

        def malicious_kinds(self, r):
            honest_subs = [a for a in r.samples if a not in r.bad]
            kinds = []
            if honest_subs:
                kinds += ["reject_honest", "exclude_honest"]
            if r.bad:
                kinds.append("spare_bad")
            if len(r.samples) - len(r.bad) >= QUORUM:
                kinds.append("other_model")
            return kinds

        # ---------------------------------------------------------- committee

        @initialize(bad_one=st.sampled_from([None, 0, 1, 2]), kind=st.sampled_from(["dispute_all", "attest_all"]))
        def draw_committee(self, bad_one, kind):
            if bad_one is not None:
                self.nature[verifiers[bad_one].address] = kind
            assert self.honest_verifiers() >= M
            event(f"committee: {'all honest' if bad_one is None else 'one ' + kind}")

        # ------------------------------------------------------------- rounds

        @precondition(lambda self: not self.phase_is(Phase.OPEN, Phase.PROPOSED))
        @rule()
        def start_round(self):
            s = self.s
            self.tick()
            tx = fl.startRound(sender=aggregator)
            s.current += 1
            deadline = s.now + SUBMISSION
            assert tx.events == [fl.RoundStarted(s.current, s.latest_model, deadline)]
            s.rounds[s.current] = RoundModel(deadline=deadline, eligible=s.eligible)
            event("startRound: ok")

        def submit_one(self, a, bad, samples):
            s, r = self.s, self.round()
            self.tick()
            s.nonce += 1
            com = keccak(text=f"committee-fuzz-update-{s.nonce}")
            tx = fl.submitUpdate(s.current, com, samples, "", sender=account[a])
            assert tx.events == [fl.UpdateSubmitted(s.current, a, com, samples, "")]
            r.samples[a] = samples
            if bad:
                r.bad.add(a)
            if s.counted_from[a] <= s.current:
                r.eligible_submitted += 1
            event(f"submit: {'bad' if bad else 'honest'}")

        @precondition(lambda self: self.can_submit())
        @rule(data=st.data(), bad=st.integers(0, 3), samples=st.sampled_from([1, 100, 1000]))
        def submit(self, data, bad, samples):
            a = data.draw(st.sampled_from(self.can_submit()), "client")
            self.submit_one(a, bad == 3, samples)

        @precondition(lambda self: self.can_submit())
        @rule(data=st.data())
        def submit_all(self, data):
            """Every client that can submit does (drives the round to "all in")."""
            for a in self.can_submit():
                self.submit_one(a, data.draw(st.integers(0, 3), f"{a} bad") == 3, 10)

        @precondition(lambda self: [a for a in addresses if self.s.stake[a] < MIN_STAKE])
        @rule(data=st.data())
        def top_up(self, data):
            """A client slashed below the minimum stake comes back (it counts again from the next round)."""
            s = self.s
            a = data.draw(st.sampled_from([a for a in addresses if s.stake[a] < MIN_STAKE]), "client")
            self.tick()
            tx = fl.topUp(sender=account[a], value=MIN_STAKE)
            s.stake[a] += MIN_STAKE
            assert tx.events == [fl.StakeToppedUp(a, MIN_STAKE, s.stake[a])]
            s.staked += MIN_STAKE
            self.dirty = True
            s.balance += MIN_STAKE
            if s.stake[a] >= MIN_STAKE:
                s.eligible += 1
                s.counted_from[a] = s.current + 1
            event("topUp: ok")

        @precondition(lambda self: self.s.bond < BOND)
        @rule(extra=st.sampled_from([0, 1]))
        def post_bond(self, extra):
            s = self.s
            amount = BOND - s.bond + extra
            self.tick()
            tx = fl.postBond(sender=aggregator, value=amount)
            s.bond += amount
            s.balance += amount
            self.posted += amount
            assert tx.events == [fl.BondPosted(aggregator, amount, s.bond)]
            self.seen_bond = s.bond
            self.dirty = True
            event("postBond: ok")

        @precondition(lambda self: not self.phase_is(Phase.OPEN, Phase.PROPOSED))
        @rule(data=st.data())
        def round_trip(self, data):
            """A new round up to its proposal in one step: start, every client submits, propose."""
            self.start_round()
            self.submit_all(data)
            self.propose(data)

        @precondition(lambda self: self.phase_is(Phase.OPEN))
        @rule(data=st.data())
        def propose(self, data):
            s, rid = self.s, self.s.current
            r = self.round()
            if not r.samples and self.can_submit() and data.draw(st.integers(0, 4), "propose an empty round") != 4:
                self.submit_all(data)
            if s.bond < BOND and data.draw(st.integers(0, 3), "propose without the bond") != 3:
                self.post_bond(0)  # a forfeit took the bond below the job's: top it up first
            if s.now <= r.deadline and not self.all_in(r) and data.draw(st.integers(0, 4), "try early") != 4:
                s.now = max(s.now, r.deadline)  # tick() moves just past it
            honest = self.verdict_outcome(rid, list(r.bad), [])
            kinds = self.malicious_kinds(r)
            kind = "honest" if not kinds or data.draw(st.booleans(), "malicious") is False else data.draw(
                st.sampled_from(kinds), "malicious kind")
            honest_subs = sorted(a for a in r.samples if a not in r.bad)
            if kind == "honest":
                o = honest
            elif kind == "reject_honest":
                victim = data.draw(st.sampled_from(honest_subs), "victim")
                o = self.verdict_outcome(rid, list(r.bad) + [victim], [])
            elif kind == "exclude_honest":
                victim = data.draw(st.sampled_from(honest_subs), "victim")
                o = self.verdict_outcome(rid, list(r.bad), [victim])
            elif kind == "spare_bad":
                spared = data.draw(st.sampled_from(sorted(r.bad)), "spared")
                o = self.verdict_outcome(rid, [a for a in r.bad if a != spared], [])
            else:  # other_model
                o = self.verdict_outcome(rid, list(r.bad), [], model=keccak(text=f"committee-fuzz-evil-model-{rid}"),
                                         evidence=honest["evidenceHash"])
            self.tick()
            call = lambda: fl.proposeRound(rid, o, sender=aggregator)  # noqa: E731
            if s.now <= r.deadline and not self.all_in(r):
                return self.expect("propose", "DeadlineNotReached", call, deadline=r.deadline)
            if s.bond < BOND:
                return self.expect("propose", "BondTooLow", call, bonded=s.bond, required=BOND)
            digest = by_hand_digest(chain_id, fl.address, rid, o)
            honest_digest = by_hand_digest(chain_id, fl.address, rid, honest)
            assert (digest == honest_digest) == (kind == "honest")
            tx = call()
            assert [e.event_name for e in tx.events] == ["RoundProposed"]  # nothing applied yet
            assert tx.events[0].event_arguments["digest"] == digest
            assert fl.outcomeDigest(rid, o, **V) == digest
            p = fl.getProposal(rid, **V)
            assert (p.digest, p.proposer, p.proposedAt, p.attestations, p.disputes) == (
                digest, aggregator.address, s.now, 0, 0)
            r.phase, r.proposal, r.honest, r.kind = Phase.PROPOSED, o, honest, kind
            r.digest, r.proposed_at = digest, s.now
            event(f"propose: {kind} ({len(r.samples)} submitted, {len(r.bad)} bad)")

        # -------------------------------------------------------------- votes

        def intended_vote(self, v, r, data):
            """(action, outcome or digest) a verifier of this nature sends, and an optional wrong try first."""
            nature = self.nature[v.address]
            honest_digest = by_hand_digest(chain_id, fl.address, self.s.current, r.honest)
            blank = lambda o: dict(o, evidenceLocator="", modelLocator="")  # noqa: E731 - locators are hints only
            if nature == "honest":
                if r.digest == honest_digest:
                    return ("attest", blank(r.honest)), None
                return ("dispute", honest_digest), None
            if nature == "attest_all":
                wrong = None
                if data.draw(st.booleans(), "attest another outcome first"):
                    other = r.honest if r.digest != honest_digest else dict(r.honest, evidenceHash=b"\x99" * 32)
                    wrong = ("attest", other)
                return ("attest", blank(r.proposal)), wrong
            # dispute_all
            own_first = data.draw(st.booleans(), "dispute the proposal's own digest first")
            wrong = ("dispute", r.digest) if own_first else None
            junk = keccak(text=f"committee-fuzz-junk-{self.s.current}")
            digest = honest_digest if r.digest != honest_digest and data.draw(st.booleans(), "honest digest") else junk
            return ("dispute", digest), wrong

        def vote(self, v, action, arg):
            s, rid = self.s, self.s.current
            r = self.round()
            self.tick()
            if action == "attest":
                call = lambda: fl.attest(rid, arg, sender=v)  # noqa: E731
            else:
                call = lambda: fl.dispute(rid, arg, sender=v)  # noqa: E731
            label = f"{action} ({self.nature[v.address]})"
            if r.phase != Phase.PROPOSED:
                return self.expect(label, "NotProposed", call, roundId=rid)
            expires = r.proposed_at + ATTESTATION
            if s.now > expires:
                return self.expect(label, "ProposalExpired", call, expiredAt=expires)
            if v.address in r.votes:
                return self.expect(label, "AlreadyVoted", call, roundId=rid, verifier=v)
            if action == "attest":
                attested = by_hand_digest(chain_id, fl.address, rid, arg)
                if attested != r.digest:
                    return self.expect(label, "DigestMismatch", call, attested=attested, proposed=r.digest)
            elif arg == r.digest:
                return self.expect(label, "DisputeMatchesProposal", call, digest=arg)

            before = {a: storage.stake(a) for a in r.samples}
            tx = call()
            r.votes[v.address] = action
            assert fl.voteOf(rid, v, **V) == (1 if action == "attest" else 2)
            names = [e.event_name for e in tx.events]
            if action == "attest":
                n = r.attestations
                assert tx.events[0] == fl.RoundAttested(rid, v, n)
                if n == M:  # the m-th attestation applies the proposal
                    self.apply(r, tx, before)
                else:
                    assert names == ["RoundAttested"]
                event(f"{label}: ok")
                return
            n = r.disputes
            assert tx.events[0] == fl.RoundDisputed(rid, v, arg, n)
            if n == DISPUTES_TO_FAIL:  # the (k - m + 1)-th dispute fails the round, forfeits the bond
                forfeit = min(s.bond, BOND)
                assert names == ["RoundDisputed", "ProposalRejected"]
                assert tx.events[1] == fl.ProposalRejected(rid, aggregator, forfeit)
                s.bond -= forfeit
                s.treasury += forfeit
                r.forfeited = forfeit
                r.phase = Phase.FAILED
                self.dirty = True
                event(f"round: failed by disputes ({r.kind} proposal)")
            else:
                assert names == ["RoundDisputed"]
            event(f"{label}: ok")

        def apply(self, r, tx, before):
            """The model of applying a proposal, written out: slashes, exclusions, then Finalized or Failed."""
            s, rid, o = self.s, self.s.current, r.proposal
            if self.honest_verifiers() >= M:
                assert r.kind == "honest", f"a {r.kind} proposal was applied"
            rejected, excluded = o["rejected"], o["excluded"]
            slashes = [dict(e.event_arguments) for e in tx.events if e.event_name == "UpdateRejected"]
            assert [x["client"] for x in slashes] == rejected
            total = 0
            for a, x in zip(rejected, slashes):
                cut = s.stake[a] * SLASH_BPS // 10_000
                assert x["slashed"] == cut and x["reason"] == REASON_INVALID and x["stakeBefore"] == s.stake[a]
                if s.stake[a] >= MIN_STAKE > s.stake[a] - cut:
                    s.eligible -= 1
                s.stake[a] -= cut
                total += cut
            assert [e.event_arguments["client"] for e in tx.events if e.event_name == "UpdateExcluded"] == excluded
            s.staked -= total
            s.treasury += total
            accepted = len(r.samples) - len(rejected) - len(excluded)
            weight = sum(n for a, n in r.samples.items() if a not in rejected and a not in excluded)
            last = tx.events[-1]
            if accepted < QUORUM:
                assert last == fl.RoundFailed(rid, accepted, len(rejected), len(excluded))
                r.phase = Phase.FAILED
                event(f"round: applied, failed below the quorum ({len(rejected)} slashed)")
            else:
                reward = min(REWARD, s.pool)
                s.pool -= reward
                s.allocated += reward
                assert last == fl.RoundFinalized(rid, o["modelHash"], accepted, weight, reward)
                s.latest_model = o["modelHash"]
                r.phase = Phase.FINALIZED
                event(f"round: finalized ({len(rejected)} slashed)")
            r.applied = True
            self.dirty = True
            # No honest submitter lost stake or was left out; every bad one was rejected.
            for a in r.samples:
                after = fl.getClient(account[a], **V).stake
                status = fl.getUpdate(rid, account[a], **V).status
                if a in r.bad:
                    assert status == UpdateStatus.REJECTED and after == s.stake[a] < before[a]
                else:
                    assert status == UpdateStatus.SUBMITTED and after == before[a]

        def can_vote(self):
            """A proposal awaits the committee, and the next vote is at most one second too late."""
            return self.phase_is(Phase.PROPOSED) and self.s.now <= self.round().proposed_at + ATTESTATION

        def voters(self):
            r = self.round()
            return [v for v in verifiers if v.address not in r.votes]

        @precondition(lambda self: self.can_vote())
        @rule(data=st.data())
        def verifier_votes(self, data):
            """One verifier votes as its nature says (mostly one that has not voted yet)."""
            r = self.round()
            if data.draw(st.integers(0, 7), "an outsider votes") == 7:
                return self.outsider_votes(data, data.draw(st.sampled_from(["attest", "dispute"]), "action"))
            fresh = self.voters()
            pool = verifiers if not fresh or data.draw(st.integers(0, 4), "anyone") == 4 else fresh
            v = data.draw(st.sampled_from(pool), "verifier")
            (action, arg), wrong = self.intended_vote(v, r, data)
            if wrong is not None:
                self.vote(v, *wrong)
            self.vote(v, action, arg)

        @precondition(lambda self: self.can_vote())
        @rule(data=st.data())
        def committee_decides(self, data):
            """The verifiers who have not voted vote in some order, until the round is decided."""
            order = data.draw(st.permutations(self.voters()), "order")
            for v in order:
                (action, arg), _ = self.intended_vote(v, self.round(), data)
                if self.round().phase != Phase.PROPOSED:
                    if data.draw(st.booleans(), "vote late"):
                        self.vote(v, action, arg)  # NotProposed: the round is decided
                    break
                self.vote(v, action, arg)

        def outsider_votes(self, data, action):
            """Anyone outside the committee (the aggregator included) cannot vote."""
            who = data.draw(st.sampled_from([stranger, aggregator, account[addresses[0]]]), "outsider")
            r, rid = self.round(), self.s.current
            self.tick()
            if action == "attest":
                o = r.proposal or outcome(ZERO32)
                call = lambda: fl.attest(rid, o, sender=who)  # noqa: E731
            else:
                call = lambda: fl.dispute(rid, b"\x42" * 32, sender=who)  # noqa: E731
            self.expect(f"{action} (outsider)", "NotVerifier", call, account=who)

        # --------------------------------------------------------------- time

        @rule(dt=st.sampled_from([1, 30, 120]))
        def wait(self, dt):
            """Short waits (the deadline and the attestation period are reached by the rules that need them)."""
            self.s.now += dt

        @precondition(lambda self: self.phase_is(Phase.PROPOSED))
        @rule(offset=st.sampled_from([-1, 0, 1]))
        def wait_until_expiry(self, offset):
            """The next transaction runs at the end of the attestation period, or one second off."""
            t = self.round().proposed_at + ATTESTATION + offset
            if t - 1 > self.s.now:
                self.s.now = t - 1  # tick() moves to t
                event(f"time: at expiry {offset:+d}")

        @precondition(lambda self: self.phase_is(Phase.PROPOSED))
        @rule(data=st.data())
        def expire(self, data):
            s, r, rid = self.s, self.round(), self.s.current
            expires = r.proposed_at + ATTESTATION
            if r.phase == Phase.PROPOSED and s.now < expires and data.draw(st.integers(0, 3), "too early") != 3:
                s.now = expires  # tick() moves just past it
            self.tick()
            call = lambda: fl.expireProposal(rid, sender=stranger)  # noqa: E731
            if r.phase != Phase.PROPOSED:
                return self.expect("expire", "NotProposed", call, roundId=rid)
            if s.now <= expires:
                return self.expect("expire", "ProposalNotExpired", call, expiresAt=expires)
            tx = call()
            assert tx.events == [fl.ProposalExpiredCancelled(rid), fl.RoundCancelled(rid, stranger)]
            r.phase = Phase.CANCELLED
            self.dirty = True
            event(f"expire: cancelled a {r.kind} proposal after {r.attestations}A/{r.disputes}D")

        # --------------------------------------------------------- invariants

        @invariant()
        def books(self):
            s = self.s
            balance = chain.provider.get_balance(fl.address)
            totals = storage.read_totals()
            assert balance == sum(totals.values()) == s.balance  # = accounted(fl); no forced ether: equal
            assert (totals["totalStaked"], totals["rewardPool"], totals["totalAllocated"], totals["totalOwed"]) == (
                s.staked, s.pool, s.allocated, 0)
            treasury, bond = totals["treasuryOwed"], storage.bond(aggregator)
            assert (treasury, bond, totals["totalBonded"], totals["totalBurned"]) == (s.treasury, s.bond, s.bond, 0)
            for a in addresses:  # no honest client slashed: every stake is exactly the model's
                assert storage.stake(a) == s.stake[a]
            r = self.round()
            if self.dirty:  # money or a phase moved in this step: the same, and more, through the views
                self.dirty = False
                assert fl.balance == accounted(fl) == balance
                assert fl.treasuryOwed(**V) == treasury and fl.bondOf(aggregator, **V) == bond
                if r is not None:
                    rr, p = fl.getRound(s.current, **V), fl.getProposal(s.current, **V)
                    assert rr.phase == r.phase
                    assert (p.attestations, p.disputes) == (r.attestations, r.disputes)
                    if rr.phase == Phase.FINALIZED:  # never with fewer than m attestations
                        assert p.attestations >= M
                        assert sum(fl.voteOf(s.current, v, **V) == 1 for v in verifiers) >= M
                        assert r.kind == "honest"  # a malicious proposal never finalizes
            # The bond grows only by postBond (which moves seen_bond), and only ever shrinks on the
            # (k - m + 1)-th dispute, by the forfeit, to the treasury.
            assert bond <= self.seen_bond
            if bond < self.seen_bond:
                p = fl.getProposal(s.current, **V)
                assert r is not None and fl.getRound(s.current, **V).phase == Phase.FAILED
                assert p.disputes == DISPUTES_TO_FAIL
                assert sum(fl.voteOf(s.current, v, **V) == 2 for v in verifiers) == DISPUTES_TO_FAIL
                assert self.seen_bond - bond == min(self.seen_bond, BOND) == r.forfeited
                assert treasury - self.seen_treasury == r.forfeited  # no slash in the same step
            self.seen_bond, self.seen_treasury = bond, treasury

        def check_rounds(self):
            """End of an example: every round's record against the model."""
            s = self.s
            assert fl.latestModelHash(**V) == s.latest_model
            assert fl.balance == accounted(fl) == s.balance
            for a in addresses:  # the views agree with the storage reads of every step
                assert fl.getClient(account[a], **V).stake == s.stake[a]
            forfeits = 0
            for rid, r in s.rounds.items():
                rr, p = fl.getRound(rid, **V), fl.getProposal(rid, **V)
                assert rr.phase == r.phase
                assert (p.attestations, p.disputes) == (r.attestations, r.disputes)
                assert p.digest == r.digest
                if rr.phase == Phase.FINALIZED:
                    assert p.attestations >= M and r.kind == "honest" and r.applied
                if r.applied or rr.rejected or rr.excluded:  # applied (finalized or below the quorum)
                    assert p.attestations >= M and p.disputes < DISPUTES_TO_FAIL and r.kind == "honest"
                if r.forfeited:
                    assert rr.phase == Phase.FAILED and p.disputes == DISPUTES_TO_FAIL and not r.applied
                    if self.honest_verifiers() >= M:
                        assert r.kind != "honest"  # an honest proposal never loses the bond
                forfeits += r.forfeited
                if not r.applied:  # disputed, expired, or never decided: nobody marked
                    for a in r.samples:
                        assert fl.getUpdate(rid, account[a], **V).status == UpdateStatus.SUBMITTED
                    assert rr.rejected == rr.excluded == 0
            # Every bond wei lost was a forfeit (the aggregator never withdraws here).
            assert fl.bondOf(aggregator, **V) == INITIAL_BOND + self.posted - forfeits

    OUTCOMES.clear()
    run_state_machine_as_test(
        CommitteeMachine,
        settings=settings(max_examples=MAX_EXAMPLES, stateful_step_count=STEPS, deadline=None,
                          suppress_health_check=list(HealthCheck)),
    )
    print("\ncommittee stateful test outcomes:")
    for name, n in sorted(OUTCOMES.items()):
        print(f"{n:6d}  {name}")
