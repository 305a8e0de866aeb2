"""`ape run aggregator`: start a round, wait until every client is in (or the deadline), close it, repeat."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..chain import ChainError, FLContract, JobParams, Phase, RoundInfo, head_block, is_dev_chain
from ..logs import Cursor
from ..models import ModelSpec
from ..rogue import check_rogue_aggregator, rogue_computation
from ..rounds import RoundOutcome, compute_round, evidence_of, outcome_of, round_dp, round_recipients
from ..store import BlobStore
from ..timing import Timings
from ..training import evaluate
from .deploy import Job
from .lifecycle import (
    Log,
    PartyError,
    Stop,
    advance_chain_past,
    chain_now,
    confirmed_now,
    check_data_fits,
    round_closed,
    run_until_done,
    short,
)


class Aggregator:
    """Runs rounds for one job; holds the sealing key and a held-out evaluation set."""

    def __init__(
        self,
        account: Any,
        fl: FLContract,
        store: BlobStore,
        private_key: bytes,
        spec: ModelSpec,
        x_eval: np.ndarray | None,
        y_eval: np.ndarray | None,
        *,
        chain_id: int,
        strategy: str = "fedavg",
        strategy_params: dict[str, Any] | None = None,
        timings: Timings | None = None,
        rogue: str | None = None,
        rogue_rounds: Sequence[int] | None = None,
        log: Callable[[str], None] | None = None,
    ):
        self.account = account
        self.fl = fl
        self.store = store
        self.private_key = private_key
        self.spec = spec
        self.x_eval = x_eval
        self.y_eval = y_eval
        self.chain_id = chain_id
        self.strategy = strategy
        self.strategy_params = dict(strategy_params or {})
        self.timings = timings or Timings()
        # A simulated malicious aggregator (ml.rogue): tampers with its proposal in these rounds (all if None).
        self.rogue = check_rogue_aggregator(rogue) if rogue else None
        self.rogue_rounds = set(rogue_rounds) if rogue_rounds is not None else None
        self.log = log or (lambda _line: None)
        self._bonded = False  # the bond was checked (or posted) and no proposal forfeited it since
        self.pool_at_open: int | None = None  # the reward pool as open_round saw it

    @property
    def address(self) -> str:
        return str(self.account.address)

    def is_rogue_in(self, round_id: int) -> bool:
        return self.rogue is not None and (self.rogue_rounds is None or round_id in self.rogue_rounds)

    def ensure_bond(self) -> int:
        """Tops the aggregator's bond up to the job's (a committee job needs it to propose); wei posted."""
        fl = self.fl
        if fl.committee().trusted or self._bonded:
            return 0
        need = fl.params().aggregatorBond - fl.bond_of(str(self.account.address))
        if need <= 0:
            self._bonded = True
            return 0
        fl.post_bond(self.account, need)
        self._bonded = True
        self.log(f"posted a bond of {need / 10**18:g} ETH (the job asks {fl.params().aggregatorBond / 10**18:g} ETH "
                 "to propose; a proposal the committee disputes forfeits it)")
        return need

    def open_round(self) -> int:
        """The open round, starting a new one if none is open (restart-safe)."""
        with self.timings.measure("chain"):
            view = self.fl.round_view(0, self.address)  # the current round, in one call
            self.pool_at_open = view.reward_pool
            if view.current_round and view.round.phase == Phase.OPEN:
                return view.current_round
            reached = budget_reached(self.fl.params(), view.current_round)
            if reached:
                raise BudgetReached(reached)
            return self.fl.start_round(self.account)

    def propose(self, round_id: int, info: RoundInfo | None = None) -> RoundOutcome:
        """Computes the round and proposes its outcome on chain (model, verdicts, evidence).

        Verdicts never depend on the quorum: below it the outcome carries no model and the
        round closes as Failed, its rejected updates slashed all the same (a bad update cannot
        escape its slash by making the round miss the quorum). Each rejection's evidence (the
        reason and, for a reason about the content, the update's content key) is published so
        that anyone can re-check it. In trusted-aggregator mode (no committee) the proposal
        applies at once; otherwise the round waits for the committee (status ``proposed``).
        `info`: the round's record, if the caller read it once the submissions were in.
        """
        gas0 = self.fl.meter.total
        with self.timings.measure("chain"):
            params = self.fl.params()
            dp = round_dp(params, self.private_key, round_recipients(self.fl), chain_id=self.chain_id,
                          contract=self.fl.address, round_id=round_id) \
                if params.central_dp is not None else None  # (round_recipients reads the committee: DP only)
        comp = compute_round(
            self.fl, self.store, self.private_key, self.spec, round_id,
            chain_id=self.chain_id, strategy=self.strategy, strategy_params=self.strategy_params,
            timings=self.timings, info=info, dp=dp,
        )
        with self.timings.measure("chain"):
            params = self.fl.params()
        honest_accepted = list(comp.accepted)
        rogue_note = ""
        if self.is_rogue_in(round_id):
            comp, rogue_note = rogue_computation(self.rogue, comp, self.spec, self.strategy, self.strategy_params)
            self.log(f"round {round_id}: ROGUE aggregator: {rogue_note}")
        samples = {u.key: u.num_samples for u in comp.valid}
        below = comp.result is None or len(comp.accepted) < params.quorum
        loss = accuracy = float("nan")
        model_locator = evidence_locator = ""
        with self.timings.measure("encode_seal_store"):
            evidence = evidence_of(comp)
            if evidence is not None:
                evidence_locator = self.store.locator(self.store.put(evidence.encode()))
            if not below:
                model_locator = self.store.locator(self.store.put(comp.model_blob))
        if not below and self.x_eval is not None and len(self.x_eval):  # evaluation set optional
            with self.timings.measure("evaluation"):
                ev = evaluate(self.spec, comp.result.weights, self.x_eval, self.y_eval)
            loss, accuracy = float(ev.loss), float(ev.accuracy)
        outcome = outcome_of(comp, params.quorum, evidence_locator=evidence_locator, model_locator=model_locator)
        with self.timings.measure("chain"):
            self.ensure_bond()
            self.fl.propose(self.account, round_id, outcome)
            # With a committee the round now waits for it; without one the proposal applied (its reward
            # is what the round's record says).
            info = self.fl.round(round_id) if self.fl.committee().trusted else None
        phase = info.phase if info is not None else Phase.PROPOSED
        status = {Phase.FINALIZED: "finalized", Phase.FAILED: "failed", Phase.PROPOSED: "proposed"}.get(
            phase, phase.name.lower())
        note = (f"{len(comp.accepted)} valid update(s), quorum is {params.quorum}: no model, "
                f"{len(comp.rejected)} rejection(s) slashed") if below else ""
        if getattr(comp, "private", None) is not None and comp.private.note:
            note = comp.private.note
        return RoundOutcome(
            round_id, status, None if below else comp.model_hash, comp.accepted, comp.excluded, comp.rejected,
            loss=loss, accuracy=accuracy, gas=self.fl.meter.total - gas0,
            reward=info.reward if status == "finalized" else 0, note=note, samples=samples,
            rogue=rogue_note, honest_accepted=honest_accepted, **dp_columns(params, round_id, comp),
        )

    def settle(self, outcome: RoundOutcome) -> RoundOutcome:
        """The outcome once the committee decided (or the proposal expired): status, reward, note, votes."""
        fl = self.fl
        view = fl.round_view(outcome.round_id, self.address)
        info, p = view.round, view.proposal
        outcome.attestations, outcome.disputes = p.attestations, p.disputes
        if info.phase == Phase.FINALIZED:
            outcome.status, outcome.reward = "finalized", info.reward
        elif fl.committee().disputed(info.phase, p):
            outcome.status = "disputed"
            self._bonded = False  # forfeited: the next proposal posts it again
            outcome.note = (f"the committee disputed the proposal ({p.disputes} dispute(s)): nothing applied, "
                            "nobody slashed, the aggregator's bond forfeited")
        elif info.phase == Phase.FAILED:
            outcome.status = "failed"
        elif info.phase == Phase.CANCELLED:
            outcome.status = "expired"
            outcome.note = "the committee did not decide within the attestation period: nothing applied"
        else:
            outcome.status = info.phase.name.lower()
        return outcome


# --------------------------------------------------------------------------- differential privacy


class BudgetReached(PartyError):
    """The job's epsilon budget allows no further round (the contract would refuse it too)."""


def budget_reached(params: JobParams, started: int) -> str | None:
    """Why no further round may start in a DP job with a budget, in one line (None: it may)."""
    dp = params.dp
    if dp is None or not params.dpMaxRounds or started < params.dpMaxRounds:
        return None
    acc = dp.accountant(started)
    return (f"privacy budget reached: {started} round(s) spent epsilon {acc.spent:.4g} of the budget "
            f"{dp.budget:g} at delta {dp.delta:.3g} (z = {dp.noise:g}); round {started + 1} would take it to "
            f"{acc.next_spent:.4g}, so no further round starts (the contract refuses it: PrivacyBudgetSpent)")


def dp_columns(params: JobParams, round_id: int, comp: Any) -> dict[str, Any]:
    """A DP round's figures for its report row: cumulative epsilon (every started round counts), noise, clips."""
    dp = params.dp
    if dp is None:
        return {}
    res = getattr(comp, "dp_result", None)
    return dict(epsilon=dp.accountant(round_id).spent, noise_std=res.noise_std if res is not None else float("nan"),
                clipped=sum(res.clipped) if res is not None else 0)


# --------------------------------------------------------------------------- waiting


def waiting_line(round_id: int, submitted: int, expected: int, missing: list[str], seconds_left: int,
                 show: int = 5) -> str:
    """The aggregator's one line while a round fills: how many are in, who is missing, how long is left."""
    line = f"round {round_id}: {submitted}/{expected} update(s) in"
    if missing:
        names = ", ".join(short(a, 8) for a in missing[:show]) + (f" and {len(missing) - show} more"
                                                                  if len(missing) > show else "")
        line += f"; waiting for {names}"
    left = max(0, int(seconds_left))
    line += f"; deadline in {_duration(left)}" if left else "; deadline passed"
    return line


def missed_line(round_id: int, streaks: dict[str, int], missing: list[str], show: int = 5) -> str:
    """One line naming the clients that missed a round; a long streak says what it costs and what to do."""
    names = [short(a, 8) + (f" ({streaks[a]} rounds in a row)" if streaks.get(a, 0) > 1 else "")
             for a in missing[:show]]
    line = f"round {round_id}: missed by {', '.join(names)}" + (f" and {len(missing) - show} more"
                                                                if len(missing) > show else "")
    if any(streaks.get(a, 0) >= 3 for a in missing):
        line += ("; a client that stopped (out of gas money?) stays active and every round waits for it "
                 "until the deadline: its operator should restart it, or call requestExit")
    return line


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def pool_warning(pool: int, per_round: int) -> str | None:
    """A warning when the reward pool cannot pay the next round in full (None when it can)."""
    if per_round <= 0 or pool >= per_round:
        return None
    from .lifecycle import fmt_eth

    what = "is empty" if pool == 0 else f"holds {fmt_eth(pool)}"
    return (f"WARNING: the reward pool {what}, a finalized round pays {fmt_eth(per_round)}: clients will be paid "
            f"{'nothing' if pool == 0 else 'less'}; anyone can refill it with the contract's fundRewards")


class Roster:
    """Registered clients, from ClientRegistered events read with a cursor: each block is read once, and
    the cursor (kept in a file when the job has one) survives a restart."""

    def __init__(self, fl: FLContract, cursor: Cursor | None = None):
        self.fl = fl
        self.cursor = cursor or Cursor(None, "ClientRegistered", fl.deploy_block)

    @property
    def clients(self) -> list[str]:
        return self.cursor.items

    def refresh(self) -> list[str]:
        head = head_block()
        if head >= self.cursor.block:
            logs = self.fl.logs("ClientRegistered", self.cursor.block, head)
            self.cursor.advance(head + 1, (str(log.client) for log in logs))
        return self.clients

    def missing(self, round_id: int, submitted: set[str]) -> list[str]:
        """Clients that could submit to the round (active, staked enough, counted from it) and have not."""
        from ..chain import ClientStatus

        fl, min_stake = self.fl, self.fl.params().minStake
        out = []
        for a in self.refresh():
            if a in submitted:
                continue
            c = fl.client(a)
            if c.status == ClientStatus.ACTIVE and c.stake >= min_stake and c.counted_from <= round_id:
                out.append(a)
        return out


# --------------------------------------------------------------------------- aggregator


@dataclass
class AggregatorOptions:
    rounds: int = 0  # stop once the job's round `rounds` is closed; 0 = run until stopped
    min_clients: int = 1  # active clients needed before a round starts
    advance_time: bool = False  # dev chain: move time past the deadline after `patience`
    patience: float = 60.0  # seconds of real time to wait for every active client (with advance_time)
    poll: float = 0.5
    max_poll: float = 5.0
    rogue: str | None = None  # a simulated malicious aggregator (ml.rogue.ROGUE_AGGREGATOR_MODES), for demos
    rogue_rounds: tuple[int, ...] | None = None  # the rounds it cheats in (None: every round)


@dataclass
class RoundRecord:
    round_id: int
    status: str
    accepted: int
    rejected: int
    excluded: int
    accuracy: float
    seconds: float | None  # from startRound to finalizeRound (None for a round resumed after a restart)
    gas: int
    model_hash: str


class AggregatorParty:
    """The aggregator's loop. Holds the sealing key and (optionally) an evaluation set, nothing else."""

    def __init__(self, account: Any, job: Job, private_key: bytes, opts: AggregatorOptions,
                 eval_data: tuple[np.ndarray, np.ndarray] | None = None, stop: Stop | None = None,
                 log: Callable[[str], None] | None = None):
        from ..sealing import public_key_of

        self.account = account
        self.job = job
        self.opts = opts
        self.stop = stop or Stop()
        self.log = log or Log("aggregator")
        fl = job.fl
        if not fl.has_role("aggregator", str(account.address)):
            raise PartyError(f"{account.address} does not hold the aggregator role of {fl.address} "
                             f"(the job's aggregator is {job.deployment.aggregator}); use that --account")
        on_chain = fl.params(fresh=True).aggregatorKey
        if public_key_of(private_key) != on_chain:
            raise PartyError(f"the key file holds public key 0x{public_key_of(private_key).hex()}, the contract "
                             f"expects 0x{on_chain.hex()}: use the key file `ape run deploy` wrote")
        if opts.advance_time and not is_dev_chain():
            raise PartyError("--advance-time works on a local dev chain only (Anvil, Ganache); on a real network "
                             "the aggregator waits for the deadline")
        x, y = eval_data if eval_data is not None else (None, None)
        if x is not None:
            check_data_fits(x, y, job.spec, "--eval-data")
        self.agg = Aggregator(account, fl, job.store, private_key, job.spec, x, y, chain_id=job.chain_id,
                              strategy=job.strategy, strategy_params=job.strategy_params, rogue=opts.rogue,
                              rogue_rounds=opts.rogue_rounds, log=self.log)
        if opts.rogue and fl.committee().trusted:
            raise PartyError("--rogue-aggregator needs a job with a verifier committee to catch it; this job is in "
                             "trusted-aggregator mode, where a rogue proposal would simply apply")
        self.records: list[RoundRecord] = []
        self.roster = Roster(fl, job.cursor("ClientRegistered"))
        self.missed_in_a_row: dict[str, int] = {}  # client -> rounds missed in a row (since this process started)

    # -- helpers
    def _done(self) -> bool:
        return round_closed(self.job.fl, self.opts.rounds)

    def _wait(self, predicate: Callable[[], bool], timeout: float = math.inf) -> bool:
        return self.stop.wait_for(predicate, timeout, self.opts.poll, self.opts.max_poll)

    def _await_committee(self, r: int) -> None:
        """Waits until the committee applies or fails round r's proposal; expires it once its period is over."""
        fl = self.job.fl
        expires = fl.proposal(r).proposed_at + fl.params().attestationPeriod

        def closed() -> bool:
            if fl.round(r).phase != Phase.PROPOSED:
                return True
            if chain_now() > expires:
                try:
                    fl.expire(self.account, r)
                    self.log(f"round {r}: the committee did not decide within the attestation period; "
                             "expired the proposal (round cancelled, nothing applied)")
                except ChainError as exc:
                    if exc.error_name not in ("NotProposed", "ProposalNotExpired"):
                        raise
                return fl.round(r).phase != Phase.PROPOSED
            return False

        self._wait(closed)

    def run(self) -> str:
        """Runs rounds until --rounds are closed or a stop request; returns why it stopped."""
        fl = self.job.fl
        strategy = self.job.strategy + (f" {self.job.strategy_params}" if self.job.strategy_params else "")
        c = fl.committee()
        self.log(f"job {fl.address} on {self.job.network} (chain {self.job.chain_id}); strategy {strategy}; "
                 f"store {self.job.store}; "
                 + (f"committee of {len(c.verifiers)} verifier(s), threshold {c.threshold}" if not c.trusted else
                    "TRUSTED-AGGREGATOR mode (no committee: proposals apply unchecked)")
                 + (f"; ROGUE: {self.opts.rogue}" if self.opts.rogue else ""))
        if self.agg.x_eval is not None:
            from ..models import import_keras

            import_keras()  # now rather than in the first round (evaluation needs Keras)
        def step() -> str | None:
            if self._done():
                return f"round {self.opts.rounds} is closed"
            try:
                self._one_round()
            except BudgetReached as exc:  # the job's promise is kept: a normal end, not an error
                return str(exc)
            return None

        return run_until_done(step, self.stop, self.log, self.job.fl)

    def _one_round(self) -> None:
        fl = self.job.fl
        cur = fl.current_round()
        started: float | None = None
        gas0 = fl.meter.total  # this round's gas: startRound (unless resumed) + finalizeRound
        if cur and fl.round(cur).phase == Phase.PROPOSED:
            self.log(f"round {cur} is proposed: waiting for the committee")
            self._await_committee(cur)
            return
        if cur and fl.round(cur).phase == Phase.OPEN:
            r = cur
            self.log(f"round {r} is open: resuming it")
        else:
            need = self.opts.min_clients
            if fl.active_clients() < need:
                self.log(f"waiting for {need} active client(s) (now {fl.active_clients()})")
                if not self._wait(lambda: fl.active_clients() >= need):
                    return
            gas0 = fl.meter.total
            r = self.agg.open_round()
            started = time.monotonic()
            info = fl.round(r)
            self.log(f"round {r} started on model {short(info.base_model_hash)}; deadline in "
                     f"{info.deadline - chain_now()} s; {fl.active_clients()} active client(s)")
            warning = pool_warning(fl.reward_pool(), fl.params().rewardPerRound)
            if warning:
                self.log(warning)
        self._wait_and_finalize(r, started, gas0)

    def _report_missed(self, r: int, missing_now: list[str]) -> None:
        """Names the clients that could have submitted to round r and did not (with their streak), so that a
        client that died (out of gas money, say) and stays active is seen, not just waited for."""
        missing = set(missing_now)
        for a in list(self.missed_in_a_row):
            if a not in missing:
                del self.missed_in_a_row[a]
        for a in sorted(missing):
            self.missed_in_a_row[a] = self.missed_in_a_row.get(a, 0) + 1
        if missing:
            self.log(missed_line(r, self.missed_in_a_row, sorted(missing)))

    def _wait_reveals(self, r: int) -> bool:
        """Private mode: after submissions close, wait for every survivor's reveal or the reveal deadline
        (moved past on a dev chain with --advance-time once the patience is over). False: stop requested."""
        fl = self.job.fl
        t0 = time.monotonic()
        view = fl.round_view(r, self.agg.address)
        self.log(f"round {r}: {view.round.submissions} of {view.priv.joined} participant(s) submitted; waiting for "
                 f"the survivors to reveal (until {view.priv.reveal_deadline - chain_now()} s from now)")
        head = [-1]

        def revealed() -> bool:
            if self.opts.advance_time and time.monotonic() - t0 >= self.opts.patience:
                return True
            now = head_block()
            if now == head[0] and chain_now() <= view.priv.reveal_deadline:
                return False
            head[0] = now
            return fl.can_propose(r, confirmed=True)

        if not self._wait(revealed):
            return False
        if not fl.can_propose(r):
            v = fl.round_view(r, self.agg.address)
            advance_chain_past(v.priv.reveal_deadline)
            self.log(f"round {r}: {v.priv.revealed} of {v.round.submissions} survivor(s) revealed within "
                     f"{self.opts.patience:g} s; moved the dev chain's time past the reveal deadline")
        return True

    def _wait_and_finalize(self, r: int, started: float | None, gas0: int | None = None) -> None:
        fl = self.job.fl
        info = fl.round(r)
        t0 = time.monotonic()
        seen = [-1, 0.0]
        missing: list[str] = []  # as of the last count change: the waiting line's, reused by _report_missed

        head = [-1]

        def ready() -> bool:
            patience_over = self.opts.advance_time and time.monotonic() - t0 >= self.opts.patience
            now = head_block()
            if now == head[0] and time.monotonic() - seen[1] < 30.0:
                return patience_over  # no new block: nothing on chain changed (no view read)
            head[0] = now
            view = fl.round_view(r, str(self.account.address), confirmed=True)  # under its confirmations
            n = view.round.submissions
            # One line when the count changes, and a reminder every 30 s (who is missing, time left).
            if n != seen[0] or time.monotonic() - seen[1] >= 30.0:
                seen[0], seen[1] = n, time.monotonic()
                submitted = {s.client for s in fl.submissions(r)}
                missing[:] = self.roster.missing(r, submitted)
                self.log(waiting_line(r, n, info.eligible if info.eligible else n + len(missing), missing,
                                      info.deadline - chain_now()))
            if view.can_propose or confirmed_now(fl) > info.deadline:
                return True  # every submission in (and under its confirmations), or the deadline passed
            return patience_over

        if not self._wait(ready):
            return  # stop requested while waiting: the round stays open for the next run
        waited = time.monotonic() - t0
        self._report_missed(r, missing)
        if not fl.can_propose(r) and chain_now() <= info.deadline:
            advance_chain_past(info.deadline)
            self.log(f"round {r}: not every active client submitted within {self.opts.patience:g} s; "
                     "moved the dev chain's time past the deadline")
        if fl.params().private and not self._wait_reveals(r):
            return  # stop requested while the survivors reveal: the round stays open for the next run
        t1 = time.monotonic()
        self.job.prefetch_model(info.base_model_hash)  # with its locator: an IPFS store learns the CID
        for attempt in range(10):
            try:
                outcome = self.agg.propose(r)
                break
            except ChainError as exc:
                if exc.error_name == "RoundNotOpen":
                    self.log(f"round {r} was closed by someone else ({fl.round(r).phase.name.lower()})")
                    return
                if exc.error_name != "DeadlineNotReached" or attempt == 9:
                    raise
                self.stop.sleep(1.0)  # the node's clock is a little behind ours
        else:  # pragma: no cover
            return
        if outcome.status == "proposed":
            c = fl.committee()
            self.log(f"round {r} proposed (digest {short(fl.proposal(r).digest)}): waiting for the committee "
                     f"({c.threshold} of {len(c.verifiers)} verifier(s) must attest)")
            self._await_committee(r)
            self.agg.settle(outcome)
        seconds = None if started is None else time.monotonic() - started
        gas = fl.meter.total - gas0 if gas0 is not None else outcome.gas
        rej = ", ".join(f"{short(x.client, 8)} ({x.reason})" for x in outcome.rejected) or "none"
        acc = "" if math.isnan(outcome.accuracy) else f"; accuracy {outcome.accuracy:.4f} on the evaluation set"
        total = "" if seconds is None else f"; round time {seconds:.1f} s"
        self.log(f"round {r} {outcome.status}: {len(outcome.accepted)} accepted, {len(outcome.rejected)} rejected "
                 f"[{rej}], {len(outcome.excluded)} excluded; model {short(outcome.model_hash)}{acc}; "
                 f"aggregator gas {gas:,}{total} (waiting {waited:.1f} s, aggregating {time.monotonic() - t1:.1f} s)"
                 + (f"; epsilon {outcome.epsilon:.4g} spent so far (DP, delta {fl.params().dp.delta:.3g})"
                    if outcome.epsilon is not None else "")
                 + (f"; {outcome.note}" if outcome.note else ""))
        self.records.append(RoundRecord(
            r, outcome.status, len(outcome.accepted), len(outcome.rejected), len(outcome.excluded), outcome.accuracy,
            seconds, gas, "0x" + outcome.model_hash.hex() if outcome.model_hash else "",
        ))
