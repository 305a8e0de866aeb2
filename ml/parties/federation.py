"""A whole federation in one process: every party is an Ape account on a dev chain.

deploy (or reuse the deployment in the output folder) -> fund rewards ->
register N clients with stake -> R rounds (clients train and submit, the
aggregator verifies, aggregates and finalizes) -> clients claim rewards ->
report (tables, report.json, rounds.csv, accuracy.png, final model).

Restartable: the deployment, the aggregator's key and the blobs live in the
output folder, the rest is read from the chain, so running the same command
again after a crash continues the open round without a duplicate submission.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import aggregation, codec, report
from .aggregator import Aggregator, BudgetReached, pool_warning
from ..rounds import RoundOutcome
from ..attacks import check_attack
from eth_utils import to_checksum_address

from ..chain import (
    ChainError,
    ClientStatus,
    Committee,
    Deployment,
    FLContract,
    GasMeter,
    JobParams,
    Phase,
    UpdateStatus,
    WEI,
    ZERO_ADDRESS,
    advance_time_past,
    is_dev_chain,
    load_deployment,
    network_name,
    save_deployment,
)
from .client import Client, TrainConfig
from .verifier import Verifier
from ..data import load_dataset
from ..parallel import AUTO, PoolError, TrainingPool, TrainTask, check_workers, resolve_workers, workers_pay_off
from ..models import ModelSpec, build_model, initial_weights, num_params, spec_for_dataset, tensor_names
from ..partition import partition, summarize
from ..sealing import generate_keypair, load_private_key, public_key_of, save_private_key
from ..store import open_store
from ..timing import Timings
from ..training import DEFAULT_BATCH_SIZE, DEFAULT_LEARNING_RATE, centralized_baseline
from ..privacy_rules import option, problem

STRATEGY_CHOICES = tuple(aggregation.STRATEGIES)


class FederationError(RuntimeError):
    """A configuration or environment problem, explained for the user."""


class SimulatedCrash(RuntimeError):
    """Raised by the `crash_after_submissions` test hook, as if the process died."""


@dataclass
class FederationConfig:
    dataset: str = "digits"
    data_path: str | None = None
    partition: str = "iid"
    alpha: float = 0.5
    shards_per_client: int = 2
    clients: int = 5
    fraction: float = 1.0
    rounds: int = 5
    epochs: int = 1
    batch_size: int = DEFAULT_BATCH_SIZE
    learning_rate: float = DEFAULT_LEARNING_RATE
    mu: float = 0.0
    arch: str = "mlp"
    strategy: str = "fedavg"
    trim_beta: float = 0.2
    krum_f: int = 1
    attackers: int = 0
    attack: str = "signflip"
    norm_bound: float = 0.0  # 0 = none published
    dp_clip: float = 0.0  # central DP: clipping norm C of each update's change; 0 = no DP
    dp_noise: float = 0.0  # noise multiplier z (noise std z*C/n on the mean of n updates)
    dp_delta: float = 0.0  # target delta; 0 = 1/N for the job's N training samples
    dp_budget: float = 0.0  # epsilon budget: no round starts past it; 0 = none
    privacy: str = "robust"  # robust (sealed updates) | secagg (private mode: secure aggregation)
    dropouts: int = 0  # secagg: chosen clients that join each round and never submit (simulated)
    sec_clip: float = 4.0  # secagg: bound of each coordinate of an update's change
    sec_scale_bits: int = 20  # secagg: fixed point 2**-bits per sample
    sec_ring_bits: int = 64  # secagg: masked vectors mod 2**bits (16, 32 or 64)
    sec_threshold: int = 2  # secagg: t, shares that recover a dropped participant
    stake_eth: float = 1.0
    reward_eth: float = 0.1
    slash_bps: int = 5000
    quorum: int = 1
    treasury: str = ZERO_ADDRESS  # receives slashed stake; the zero address burns it
    permissioned: bool = False  # the admin admits each client with its true sample count
    verifiers: int = 2  # the committee played in this process; 0 = trusted-aggregator mode
    threshold: int = 2  # m: attestations that apply a proposal
    bond_eth: float = 0.1  # the aggregator's bond (forfeited by a disputed proposal)
    attestation_period: int = 600  # seconds the committee has before a proposal expires
    rogue_aggregator: str | None = None  # a simulated malicious aggregator (ml.rogue.ROGUE_AGGREGATOR_MODES)
    rogue_rounds: tuple[int, ...] | None = None  # rounds it cheats in (None: every round)
    rogue_verifier: str | None = None  # the first verifier misbehaves (ml.rogue.ROGUE_VERIFIER_MODES)
    seed: int = 0
    workers: int | str = "auto"  # processes for the clients' local training: "auto" = one per core; 1 = here
    out: Path = Path("out")
    store: str | None = None
    fresh: bool = False
    baseline: bool = True
    quiet: bool = False
    # test hook: stop right after the submissions of this round (as a kill would)
    crash_after_submissions: int | None = None

    def check(self) -> None:
        if self.clients < 1:
            raise FederationError("--clients must be at least 1")
        if not 0 < self.fraction <= 1:
            raise FederationError("--fraction must be in (0, 1]")
        if self.rounds < 1:
            raise FederationError("--rounds must be at least 1")
        if self.attackers < 0 or self.attackers > self.clients:
            raise FederationError(f"--attackers must be between 0 and --clients ({self.clients})")
        if self.strategy not in STRATEGY_CHOICES:
            raise FederationError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGY_CHOICES)}")
        if self.attackers:
            check_attack(self.attack)
        if self.quorum < 1:
            raise FederationError("--quorum must be at least 1")
        try:
            check_workers(self.workers)
        except ValueError as exc:
            raise FederationError(str(exc)) from None
        if not 0 <= self.verifiers <= 32:
            raise FederationError("--verifiers must be between 0 (trusted aggregator) and 32")
        if self.verifiers and not 1 <= self.threshold <= self.verifiers:
            raise FederationError(f"--threshold must be between 1 and --verifiers ({self.verifiers})")
        if self.bond_eth < 0:
            raise FederationError("--bond must be >= 0")
        if self.attestation_period < 1:
            raise FederationError("--attestation-period must be at least 1 second")
        from ..rogue import check_rogue_aggregator, check_rogue_verifier

        if self.rogue_aggregator:
            check_rogue_aggregator(self.rogue_aggregator)
            if not self.verifiers:
                raise FederationError("--rogue-aggregator needs a committee to catch it (--verifiers >= 1); with "
                                      "--verifiers 0 the aggregator is trusted and nobody would")
        if self.rogue_verifier:
            check_rogue_verifier(self.rogue_verifier)
            if not self.verifiers:
                raise FederationError("--rogue-verifier needs a committee (--verifiers >= 1)")
        self._check_privacy()  # the DP rules with it: they depend on the mode
        from eth_utils import is_address

        if not is_address(self.treasury):
            raise FederationError(f"--treasury must be an address (0x followed by 40 hex digits), got {self.treasury!r}")

    def _check_privacy(self) -> None:
        broken = problem(strategy=self.strategy, privacy=self.privacy, dp_clip=self.dp_clip, dp_noise=self.dp_noise,
                         dp_delta=self.dp_delta, dp_budget=self.dp_budget, secagg_clip=self.sec_clip, spell=option)
        if broken:
            raise FederationError(broken)
        if self.privacy == "robust":
            if not 0 <= self.dropouts < self.per_round:
                raise FederationError(f"--dropouts must be between 0 and {self.per_round - 1} (the round's clients "
                                      "minus one)")
            return
        if self.attackers and self.attack not in ("tamper", "badlocator", "garbage", "inflate"):
            raise FederationError(f"--attack {self.attack} sends a bad update in the clear; in private mode it would "
                                  "go through undetected (the README says why): try tamper, badlocator or garbage")
        if self.sec_threshold < 2:
            raise FederationError("--secagg-threshold must be at least 2")
        if not 0 <= self.dropouts <= self.per_round - self.sec_threshold:
            raise FederationError(f"--dropouts must be between 0 and {self.per_round - self.sec_threshold} (the "
                                  f"{self.per_round} clients of a round minus the threshold t = {self.sec_threshold}: "
                                  "t survivors must reveal each dropped participant's shares)")
        try:
            self.secagg_params()
        except ValueError as exc:
            raise FederationError(str(exc)) from None

    def secagg_params(self) -> Any:
        from ..secagg import SecAggParams

        return SecAggParams(self.sec_clip, self.sec_scale_bits, self.sec_ring_bits, self.sec_threshold)

    @property
    def training_workers(self) -> int:
        """The processes that train (``workers`` resolved: "auto" = min(cores, clients))."""
        return resolve_workers(self.workers, self.clients)

    @property
    def per_round(self) -> int:
        return max(1, math.ceil(self.fraction * self.clients))

    def strategy_params(self) -> dict[str, Any]:
        if self.strategy == "trimmed_mean":
            return {"beta": self.trim_beta}
        if self.strategy in ("krum", "multi_krum"):
            return {"f": self.krum_f}
        return {}


@dataclass
class FederationResult:
    address: str
    chain_id: int
    network: str
    rows: list[report.RoundRow]
    final_model_hash: bytes
    final_accuracy: float
    baseline_accuracy: float | None
    clients: list[dict[str, Any]]
    timings: dict[str, float]
    wall_seconds: float
    gas_by_function: dict[str, int]
    out: Path
    report: dict[str, Any] = field(default_factory=dict)


def _eth(x: float) -> int:
    return int(round(x * WEI))


def _fmt_eth(wei: int) -> str:
    return f"{wei / WEI:.6g} ETH"


def _accounts(n_clients: int, n_verifiers: int = 0) -> tuple[Any, Any, list[Any], list[Any]]:
    """admin, aggregator, clients, verifiers: distinct test accounts (verifiers after the clients)."""
    from ape import accounts

    test = accounts.test_accounts
    need = 2 + n_clients + n_verifiers
    while len(test) < need:
        test.generate_test_account()
    return (test[0], test[1], [test[2 + i] for i in range(n_clients)],
            [test[2 + n_clients + i] for i in range(n_verifiers)])


def _select(cfg: FederationConfig, round_id: int, n: int) -> list[int]:
    """Which clients train in a round: a seeded sample, the same on every restart."""
    if cfg.per_round >= n:
        return list(range(n))
    rng = np.random.RandomState(cfg.seed * 7919 + round_id)
    return sorted(rng.choice(n, size=cfg.per_round, replace=False).tolist())


class Federation:
    def __init__(self, cfg: FederationConfig, progress_factory: Callable[..., Any] | None = None):
        cfg.check()
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.console = report.console()
        if cfg.quiet:
            self.console.quiet = True
        self.timings = Timings()
        self._pool_warned = False
        self.workers_used = 1  # training processes in the end (--workers auto may start them mid-run)
        self._auto_decided = False
        self.meter = GasMeter()
        self.stopped = ""  # why the run ended before --rounds (the privacy budget)
        self._registry: dict[str, bytes] | None = None  # private mode: registered keys, read once a run
        self.num_samples = 0
        self.store = open_store(cfg.store or str(self.out / "store"))

    def log(self, *args: Any) -> None:
        self.console.print(*args)

    # ------------------------------------------------------------ set up
    def _data(self):
        cfg = self.cfg
        ds = load_dataset(cfg.dataset, path=cfg.data_path, seed=cfg.seed)
        parts = partition(ds.y_train, cfg.clients, cfg.partition, alpha=cfg.alpha,
                          shards_per_client=cfg.shards_per_client, seed=cfg.seed)
        return ds, parts

    def _client_key(self, i: int) -> bytes:
        """Client i's registered X25519 key (private mode seals Shamir shares to it), kept in the output
        folder so that a resumed run opens what earlier rounds dealt."""
        f = self.out / f"client-{i + 1}.key"
        if not f.exists():
            save_private_key(f, generate_keypair().private)
        return load_private_key(f)

    def _committee_keys(self, verifiers: list[Any], fresh: bool) -> list[bytes]:
        """Each in-process verifier's sealing key, kept in the output folder like the aggregator's."""
        keys = []
        for i, _ in enumerate(verifiers):
            f = self.out / f"verifier-{i + 1}.key"
            if fresh or not f.exists():
                if f.exists():
                    f.unlink()
                save_private_key(f, generate_keypair().private)
            keys.append(load_private_key(f))
        return keys

    def _deploy_or_reuse(self, spec: ModelSpec, admin: Any, aggregator: Any,
                         verifiers: list[Any] | None = None) -> tuple[FLContract, bytes, list[bytes]]:
        from ape import chain

        cfg = self.cfg
        net = network_name()
        dep_file = self.out / "deployments.json"
        key_file = self.out / "aggregator.key"
        dep = None if cfg.fresh else load_deployment(dep_file, net)
        if dep is not None:
            if dep.chain_id == chain.chain_id and chain.provider.get_code(dep.address) and \
                    dep.model_spec == spec.to_dict() and key_file.exists():
                fl = FLContract.at(dep.address, deploy_block=dep.block, meter=self.meter)
                private = load_private_key(key_file)
                if fl.params().aggregatorKey != public_key_of(private):
                    raise FederationError(f"{key_file} does not hold the aggregator key recorded on chain; "
                                          "use --fresh to deploy a new job")
                p = fl.params()
                if (p.permissioned, p.treasury.lower()) != (cfg.permissioned, cfg.treasury.lower()):
                    raise FederationError(f"the job in {dep_file} was deployed with permissioned={p.permissioned}, "
                                          f"treasury {p.treasury}; use --fresh to deploy one with these options")
                if p.private != (cfg.privacy == "secagg"):
                    raise FederationError(f"the job in {dep_file} runs in {'private' if p.private else 'robust'} "
                                          "mode; use --fresh to deploy one with --privacy as given")
                if (p.dpClip, p.dpNoise) != (round(cfg.dp_clip * 1e6), round(cfg.dp_noise * 1e6)):
                    raise FederationError(f"the job in {dep_file} was deployed with DP clip {p.dpClip / 1e6:g}, "
                                          f"noise {p.dpNoise / 1e6:g}; use --fresh to deploy one with these options")
                keys = self._committee_keys(verifiers or [], fresh=False)
                c = fl.committee()
                if (list(c.verifiers), list(c.keys), c.threshold) != (
                        [v.address for v in verifiers or []], [public_key_of(k) for k in keys],
                        cfg.threshold if verifiers else 0):
                    raise FederationError(f"the job in {dep_file} has another committee ({len(c.verifiers)} "
                                          f"verifier(s), threshold {c.threshold}); use --fresh to deploy one with "
                                          "these options")
                self.log(f"[bold]Resuming[/] the job at {dep.address} (from {dep_file})")
                return fl, private, keys
            self.log(f"The deployment in {dep_file} is not usable on {net} (new chain or other settings): deploying anew")

        verifiers = verifiers or []
        keys = self._committee_keys(verifiers, fresh=True)
        committee = Committee(tuple(v.address for v in verifiers), tuple(public_key_of(k) for k in keys),
                              cfg.threshold if verifiers else 0)
        keypair = generate_keypair()
        if key_file.exists():
            key_file.unlink()
        save_private_key(key_file, keypair.private)
        init = initial_weights(spec, cfg.seed)
        init_hash = self.store.put(codec.encode(init, tensor_names(spec)))
        dp_fields = self._dp_fields(keypair.private)
        if cfg.privacy == "secagg":
            from ..secagg import job_fields

            dp_fields.update(job_fields(cfg.secagg_params(), join_period=600, reveal_period=600))
        params = JobParams(
            minStake=_eth(cfg.stake_eth),
            unbondingPeriod=3600,
            submissionPeriod=600,
            gracePeriod=600,
            quorum=cfg.quorum,
            maxUpdatesPerRound=cfg.per_round if cfg.per_round < cfg.clients else 0,
            maxSamplesPerUpdate=10**9,
            slashBps=cfg.slash_bps,
            rewardPerRound=_eth(cfg.reward_eth),
            normBound=int(round(cfg.norm_bound * 1e6)),
            modelSpecHash=spec.hash(),
            initialModelHash=init_hash,
            aggregatorKey=keypair.public,
            treasury=to_checksum_address(cfg.treasury),
            permissioned=cfg.permissioned,
            attestationPeriod=cfg.attestation_period,
            aggregatorBond=_eth(cfg.bond_eth) if verifiers else 0,
            **dp_fields,
        )
        with self.timings.measure("chain"):
            fl = FLContract.deploy(admin, params, admin.address, aggregator.address, meter=self.meter,
                                   admin_delay=3600, committee=committee)
        save_deployment(dep_file, Deployment(
            network=net, chain_id=chain.chain_id, address=fl.address, block=fl.deploy_block,
            params=params.to_json(), model_spec=spec.to_dict(), aggregator=aggregator.address, admin=admin.address,
        ))
        self.log(f"Deployed FederatedLearning at [bold]{fl.address}[/] (chain {chain.chain_id}, block {fl.deploy_block})")
        return fl, keypair.private, keys

    def _dp_fields(self, aggregator_private: bytes) -> dict[str, Any]:
        """The job's DP promise as the contract stores it (empty without --dp-clip)."""
        from ..dp import DPError, job_fields

        cfg = self.cfg
        try:
            return job_fields(cfg.dp_clip, cfg.dp_noise, cfg.dp_delta, cfg.dp_budget, self.num_samples,
                              aggregator_private)
        except DPError as exc:
            raise FederationError(str(exc)) from None

    # --------------------------------------------------------------- run
    def run(self) -> FederationResult:
        from ape import chain

        from ape.logging import logger as ape_logger

        ape_logger.set_level("WARNING")
        cfg = self.cfg
        if not is_dev_chain():
            raise FederationError(
                "ape run federated_round plays every party with the test accounts of a local chain "
                "(ethereum:local:test, :foundry or a local node). For a public network run the separate "
                "`ape run deploy`, `ape run aggregator` and `ape run client` commands."
            )
        t_start = time.perf_counter()
        ds, parts = self._data()
        self.num_samples = len(ds.y_train)
        summary = summarize(ds.y_train, parts, ds.num_classes)
        self.log(summary.to_rich_table(title=f"{cfg.dataset}: {cfg.partition} partition over {cfg.clients} clients"))
        spec = spec_for_dataset(ds, cfg.arch)
        self.log(f"Model: {spec.arch} with {num_params(spec):,} parameters, spec hash 0x{spec.hash().hex()}")

        admin, agg_account, client_accounts, verifier_accounts = _accounts(cfg.clients, cfg.verifiers)
        fl, private, verifier_keys = self._deploy_or_reuse(spec, admin, agg_account, verifier_accounts)
        committee = fl.committee()
        dp = fl.params().dp
        if dp is not None:
            self.log(f"Differential privacy: clip C = {dp.clip:g}, noise multiplier z = {dp.noise:g}, delta "
                     f"{dp.delta:.3g}" + (f", epsilon budget {dp.budget:g} ({fl.params().dpMaxRounds} round(s))"
                                          if dp.budget else ", no budget")
                     + ("; each client adds its share of discrete Gaussian noise before masking (distributed DP: "
                        "nobody ever holds the noise-free aggregate)" if fl.params().private else
                        "; the noise seed is sealed to the committee (the public cannot remove the noise)"))
        self.log("Committee: " + (f"{len(committee.verifiers)} verifier(s), threshold {committee.threshold}: every "
                                  "proposal needs that many matching attestations"
                                  if not committee.trusted else
                                  "[yellow]none: trusted-aggregator mode[/] (proposals apply at once; for demos)"))
        params = fl.params()
        attackers = set(range(cfg.clients - cfg.attackers, cfg.clients))
        train_cfg = TrainConfig(cfg.epochs, cfg.batch_size, cfg.learning_rate, cfg.mu)
        clients = [
            Client(acc, fl, self.store, spec, ds.x_train[idx], ds.y_train[idx], train=train_cfg,
                   chain_id=chain.chain_id, seed=cfg.seed * 1000 + i,
                   attack=cfg.attack if i in attackers else None, timings=self.timings, index=i,
                   registered_key=self._client_key(i))
            for i, (acc, idx) in enumerate(zip(client_accounts, parts))
        ]
        aggregator = Aggregator(agg_account, fl, self.store, private, spec, ds.x_test, ds.y_test,
                                chain_id=chain.chain_id, strategy=cfg.strategy,
                                strategy_params=cfg.strategy_params(), timings=self.timings,
                                rogue=cfg.rogue_aggregator, rogue_rounds=cfg.rogue_rounds,
                                log=lambda line: self.log(f"[red]{line}[/]" if "ROGUE" in line else line))
        self.verifiers = [
            Verifier(acc, fl, self.store, key, spec, chain_id=chain.chain_id, strategy=cfg.strategy,
                     strategy_params=cfg.strategy_params(), timings=self.timings,
                     rogue=cfg.rogue_verifier if i == 0 else None)
            for i, (acc, key) in enumerate(zip(verifier_accounts, verifier_keys))
        ]

        with self._training_pool(spec, clients) as pool:  # its workers import TensorFlow while clients register
            with self.timings.measure("chain"):
                self._fund_and_register(fl, admin, clients, params)
            with self.timings.measure("training"):
                pool.wait_ready()  # the part of the workers' start-up that registering did not hide
            rows = self._rounds(fl, aggregator, clients, pool)

        # Rewards: every client claims what it earned in every finalized round.
        finalized = [r.round_id for r in rows if r.status == "finalized"]
        received = {c.address: c.claim_all(finalized) for c in clients}

        baseline_acc = None
        if cfg.baseline:
            with self.timings.measure("evaluation"):
                _, ev = centralized_baseline(spec, ds, epochs=cfg.rounds * cfg.epochs, batch_size=cfg.batch_size,
                                             learning_rate=cfg.learning_rate, seed=cfg.seed)
            baseline_acc = float(ev.accuracy)

        wall = time.perf_counter() - t_start
        return self._finish(fl, spec, clients, attackers, rows, received, baseline_acc, wall)

    def _fund_and_register(self, fl: FLContract, admin: Any, clients: list[Client], params: JobParams) -> None:
        cfg = self.cfg
        need = params.rewardPerRound * cfg.rounds
        pool = fl.reward_pool()
        if pool < need:
            fl.fund(admin, need - pool)
        from ape import chain

        for c in clients:
            if params.permissioned and fl.allowance(c.address) == 0:
                fl.admit(admin, c.address, len(c.x))  # the registrar knows its members' data sizes
            # Accounts beyond the chain's pre-funded ones start empty: the admin funds them.
            want = params.minStake + 10**18
            if chain.provider.get_balance(c.address) < want:
                admin.transfer(c.account, 2 * want)
            info = fl.client(c.address)
            if info.status == ClientStatus.NONE:
                fl.register(c.account, public_key_of(c.registered_key), params.minStake)
            elif info.stake < params.minStake:
                fl.top_up(c.account, params.minStake - info.stake)

    def _training_pool(self, spec: ModelSpec, clients: list[Client], workers: int | None = None) -> TrainingPool:
        """The run's training processes, each given every client's data once, at start-up. With
        --workers auto the run starts training here (see _maybe_parallel)."""
        if workers is None:
            workers = 1 if self.cfg.workers == AUTO else self.cfg.training_workers
        pool = _pool_of(spec, clients, workers)
        if pool.workers > 1 and self.cfg.workers != AUTO:
            self.log(f"Local training on {pool.workers} worker processes (--workers {self.cfg.workers})")
        self.workers_used = pool.workers
        return pool

    def _maybe_parallel(self, row: report.RoundRow, rounds_left: int, pool: TrainingPool,
                        pending: TrainingPool | None, stack: Any, spec: ModelSpec,
                        clients: list[Client]) -> tuple[TrainingPool, TrainingPool | None]:
        """--workers auto: after the first round trained here, starts worker processes in the background
        if they would save more than their start-up over the rounds left; switches to them once they are
        ready (rounds go on here meanwhile). Same results either way, bit for bit."""
        if self.cfg.workers != AUTO:
            return pool, None
        if pending is None and pool.workers == 1 and not self._auto_decided:
            self._auto_decided = True
            w = self.cfg.training_workers
            seconds = row.phases.get("training", 0.0)
            if workers_pay_off(seconds, rounds_left, w):
                pending = stack.enter_context(_pool_of(spec, clients, w))
                self.log(f"local training took {seconds:.1f} s this round: starting {w} worker processes in "
                         f"the background for the {rounds_left} round(s) left (--workers 1 to keep it here)")
        if pending is not None and pending.ready():
            self.log(f"local training now on {pending.workers} worker processes")
            self.workers_used = pending.workers
            return pending, None
        return pool, pending

    def _rounds(self, fl: FLContract, aggregator: Aggregator, clients: list[Client],
                pool: TrainingPool) -> list[report.RoundRow]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        cfg = self.cfg
        rows: list[report.RoundRow] = []
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=self.console, transient=False, disable=cfg.quiet)
        from contextlib import ExitStack

        pending: TrainingPool | None = None  # worker processes starting in the background (--workers auto)
        with progress, ExitStack() as stack:
            for r in range(1, cfg.rounds + 1):
                current = fl.current_round()
                if r < current or (r == current and fl.round(r).phase != Phase.OPEN):
                    rows.append(self._row_from_chain(fl, r))
                    continue
                try:
                    rows.append(self._one_round(fl, aggregator, clients, pool, progress))
                except BudgetReached as exc:
                    self.stopped = str(exc)
                    self.log(f"[yellow]{exc}[/]")
                    break
                pool, pending = self._maybe_parallel(rows[-1], cfg.rounds - r, pool, pending, stack,
                                                     aggregator.spec, clients)
        self.log(report.round_table(rows))
        return rows

    def _one_round(self, fl: FLContract, aggregator: Aggregator, clients: list[Client], pool: TrainingPool,
                   progress: Any) -> report.RoundRow:
        cfg = self.cfg
        t0 = time.perf_counter()
        before = self.timings.copy()
        gas0 = self.meter.total
        views0 = sum(fl.view_calls.values())
        round_id = aggregator.open_round()
        warning = pool_warning(aggregator.pool_at_open, fl.params().rewardPerRound)
        if warning and not self._pool_warned:  # once a run: the table shows each round's reward
            self._pool_warned = True
            self.log(f"[yellow]{warning}[/]")
        chosen = _select(cfg, round_id, len(clients))
        opened = None  # each client reads one roundView: the round and its own update in it
        task = progress.add_task(f"round {round_id}/{cfg.rounds}: training", total=len(chosen) + 2)
        status = lambda text: progress.update(task, description=f"round {round_id}/{cfg.rounds}: {text}")  # noqa: E731
        training = [clients[i] for i in chosen]
        private = fl.params().private
        if private:
            training = self._join(fl, round_id, training, status)
        elif cfg.dropouts:  # the same clients drop out as in private mode: a like-for-like comparison
            training = training[:len(training) - cfg.dropouts]
        self._train_and_submit(round_id, opened, training, pool, status, lambda: progress.advance(task))
        if private:
            self._reveal(fl, round_id, training, status)
        if cfg.crash_after_submissions == round_id:
            raise SimulatedCrash(f"simulated crash after the submissions of round {round_id}")
        progress.update(task, description=f"round {round_id}/{cfg.rounds}: verifying + aggregating")
        view = fl.round_view(round_id, aggregator.address)  # once the submissions are in
        if not view.can_propose:
            # Someone chosen did not submit: on a dev chain, move time past the deadline.
            advance_time_past(view.round.deadline)
        outcome = aggregator.propose(round_id, info=view.round)
        if outcome.status == "proposed":
            progress.update(task, description=f"round {round_id}/{cfg.rounds}: the committee re-computes it")
            committee, votes = fl.committee(), {"attest": 0, "dispute": 0}
            for v in self.verifiers:
                if votes["attest"] >= committee.threshold or votes["dispute"] >= committee.disputes_to_fail:
                    break  # m attestations applied it, or enough disputes failed it
                d = v.decide_and_vote(round_id)
                if d.sent:
                    votes[d.vote] = votes.get(d.vote, 0) + 1
                self.log(("[red]" if d.vote == "dispute" else "") + "  verifier " + d.line(v.address)
                         + ("[/]" if d.vote == "dispute" else ""))
        aggregator.settle(outcome)
        progress.advance(task)
        progress.update(task, description=f"round {round_id}/{cfg.rounds}: {outcome.status}"
                        + (f" acc {outcome.accuracy:.3f}" if outcome.status == "finalized" else ""))
        progress.advance(task)
        phases = self.timings.minus(before).seconds
        row = self._row(outcome, len(chosen), self.meter.total - gas0, time.perf_counter() - t0, phases, fl)
        row.view_calls = sum(fl.view_calls.values()) - views0
        if outcome.status == "disputed":
            # Nothing was applied: the chain's record, not the rogue proposal, is what happened.
            info = fl.round(round_id)
            row.accepted, row.excluded, row.rejected = 0, 0, 0
            row.accuracy = row.loss = float("nan")
            row.model_hash = ""
            row.submitted = info.submissions
        return row

    def _join(self, fl: FLContract, round_id: int, chosen: list[Client], status: Callable[[str], None]) -> list[Client]:
        """Private mode: every chosen client joins; the participants are then fixed (the join deadline is
        moved past on the dev chain when some eligible client did not join). Returns those that go on to
        train: all but the simulated dropouts, who joined and now vanish."""
        status(f"{len(chosen)} client(s) join")
        if self._registry is None:
            self._registry = fl.registered_keys()  # the chain is the PKI: keys from ClientRegistered events
        for c in chosen:
            c.join_private(round_id, self._registry)
        view = fl.round_view(round_id)
        if view.priv.joined < view.round.eligible:
            advance_time_past(view.priv.join_deadline)
        drop = self.cfg.dropouts
        if drop:
            self.log(f"  round {round_id}: {drop} participant(s) joined and drop out (--dropouts): "
                     f"{', '.join(c.address[:10] + '…' for c in chosen[-drop:])}")
        return chosen[:len(chosen) - drop]

    def _reveal(self, fl: FLContract, round_id: int, survivors: list[Client], status: Callable[[str], None]) -> None:
        """Private mode: once submissions are closed, every survivor reveals (its seed, its shares of the
        dropped); on the dev chain time moves past the deadline when someone never submitted."""
        view = fl.round_view(round_id)
        if view.round.submissions < view.priv.joined:
            advance_time_past(view.round.deadline)
        status(f"{len(survivors)} survivor(s) reveal")
        for c in survivors:
            try:
                c.reveal_private(round_id)
            except ChainError as exc:
                self.log(f"[yellow]client {c.address} could not reveal:[/] {exc}")
        if not fl.can_propose(round_id):
            advance_time_past(fl.round_view(round_id).priv.reveal_deadline)

    def _train_and_submit(self, round_id: int, opened: Any, chosen: list[Client], pool: TrainingPool,
                          status: Callable[[str], None], advance: Callable[[], None]) -> None:
        """Client.participate split in three, so that the pool trains every chosen client at once:
        each reads the chain and fetches the base model, all train, each seals, stores and submits."""
        tasks: list[tuple[Client, TrainTask]] = []
        for c in chosen:
            try:
                step = c.prepare(round_id, opened)
            except ChainError as exc:
                self.log(f"[yellow]client {c.address} could not submit:[/] {exc}")
                step = None
            if isinstance(step, TrainTask):
                tasks.append((c, step))
            else:
                advance()  # skipped (already submitted, or the round closed) or failed
        status(f"training {len(tasks)} client(s)" + (f" on {pool.workers} workers" if pool.workers > 1 else ""))
        try:
            with self.timings.measure("training"):  # the wall time of the whole (parallel) phase, once
                results = pool.train([t for _, t in tasks])
        except PoolError as exc:
            raise FederationError(str(exc)) from None
        for n, ((c, t), result) in enumerate(zip(tasks, results), 1):
            status(f"submitting client {n}/{len(tasks)}")
            try:
                c.finish(t, result)
            except ChainError as exc:
                self.log(f"[yellow]client {c.address} could not submit:[/] {exc}")
            advance()

    def _dp_summary(self, fl: FLContract, rows: list[report.RoundRow]) -> list[str]:
        dp = fl.params().dp
        if dp is None:
            return [f"stopped             {self.stopped}"] if self.stopped else []
        return _dp_summary_lines(dp, fl.params().dpMaxRounds, rows, self.stopped, fl.params().private)

    def _dp_report(self, fl: FLContract, rows: list[report.RoundRow]) -> dict[str, Any] | None:
        """report.json's privacy section: the job's promise and what the run spent."""
        p = fl.params()
        dp = p.dp
        if dp is None:
            return None
        spent = next((r.epsilon for r in reversed(rows) if r.epsilon is not None), 0.0)
        mechanism = ("distributed discrete Gaussian: each client clips to C and adds its share in the integer "
                     "domain before masking (Kairouz et al. 2021), sized for t survivors; RDP accounting of the "
                     "Gaussian (dp-accounting)" if p.private else
                     "central Gaussian (server-side fixed clipping), RDP accounting (dp-accounting)")
        trust = ("no party holds the noise-free aggregate; a client that skips its share lowers the noise (the "
                 "others' shares remain)" if p.private else
                 "the aggregator and the committee hold the noise seed: the guarantee is against everyone else "
                 "(readers of the published models)")
        return dict(mechanism=mechanism,
                    clip=dp.clip, noise_multiplier=dp.noise, delta=dp.delta, budget=dp.budget,
                    max_rounds=p.dpMaxRounds or None, sampling_rate=dp.sampling_rate, epsilon=spent,
                    epsilon_per_round=dp.accountant().per_round if dp.private else float("inf"),
                    noise_seed_commitment="0x" + p.dpSeedCommitment.hex(), trust=trust)

    def _committee_cell(self, fl: FLContract, attestations: int, disputes: int) -> str:
        c = fl.committee()
        if c.trusted:
            return "trusted"
        return f"{attestations}/{c.threshold}" + (f", {disputes} disputed" if disputes else " attested")

    def _row(self, o: RoundOutcome, chosen: int, gas: int, seconds: float, phases: dict[str, float],
             fl: FLContract | None = None) -> report.RoundRow:
        disputed = o.status == "disputed"
        return report.RoundRow(
            round_id=o.round_id, status=o.status, clients=chosen, accepted=len(o.accepted),
            excluded=len(o.excluded), rejected=len(o.rejected), accuracy=o.accuracy, loss=o.loss, gas=gas,
            seconds=seconds, model_hash="0x" + o.model_hash.hex() if o.model_hash else "",
            submitted=len(o.accepted) + len(o.excluded) + len(o.rejected),
            rejected_reasons={} if disputed else {r.client: r.reason for r in o.rejected}, phases=phases,
            committee=self._committee_cell(fl, o.attestations, o.disputes) if fl is not None else "",
            attestations=o.attestations, disputes=o.disputes,
            note="; ".join(x for x in (f"rogue aggregator: {o.rogue}" if o.rogue else "", o.note) if x),
            epsilon=o.epsilon, noise_std=o.noise_std, clipped=o.clipped,
        )

    def _row_from_chain(self, fl: FLContract, r: int) -> report.RoundRow:
        """A round finished by an earlier run: what the chain says (accuracy from report.json if there)."""
        info = fl.round(r)
        acc = loss = float("nan")
        prev = self.out / "report.json"
        if prev.exists():
            import json

            for row in json.loads(prev.read_text()).get("rounds", []):
                if row.get("round_id") == r:
                    acc, loss = row.get("accuracy", acc), row.get("loss", loss)
        status = {Phase.FINALIZED: "finalized", Phase.CANCELLED: "cancelled"}.get(info.phase, info.phase.name.lower())
        p = fl.proposal(r)
        c = fl.committee()
        if c.disputed(info.phase, p):
            status = "disputed"
        dp = fl.params().dp
        return report.RoundRow(r, status, info.submissions, info.accepted, info.excluded, info.rejected,
                               acc if acc is not None else float("nan"), loss if loss is not None else float("nan"),
                               0, 0.0, "0x" + info.model_hash.hex(), submitted=info.submissions,
                               committee=self._committee_cell(fl, p.attestations, p.disputes),
                               attestations=p.attestations, disputes=p.disputes,
                               epsilon=dp.accountant(r).spent if dp is not None else None)

    # ------------------------------------------------------------ output
    def _finish(self, fl: FLContract, spec: ModelSpec, clients: list[Client], attackers: set[int],
                rows: list[report.RoundRow], received: dict[str, int], baseline: float | None,
                wall: float) -> FederationResult:
        from ape import chain

        cfg = self.cfg
        final_hash = fl.latest_model_hash()
        final_weights = codec.decode(self.store.get(final_hash), spec)
        model = build_model(spec)
        model.set_weights(final_weights)
        model.save(self.out / "final_model.keras")
        (self.out / "final_model.hash").write_text("0x" + final_hash.hex() + "\n")
        (self.out / "final_model.safetensors").write_bytes(self.store.get(final_hash))

        # Each round's verdicts are in the block that closed it: one query per round, not a scan of the job.
        slashes: dict[str, int] = {}
        forfeited = 0
        for r in rows:
            for ev in fl.round_logs(["UpdateRejected", "ProposalRejected"], fl.round(r.round_id)):
                if ev.event_name == "UpdateRejected":
                    slashes[str(ev.client)] = slashes.get(str(ev.client), 0) + int(ev.slashed)
                else:
                    forfeited += int(ev.bondForfeited)
        client_rows = []
        closed = [r.round_id for r in rows if r.status in ("finalized", "failed")]
        for i, c in enumerate(clients):
            statuses = [fl.update(r, c.address).status for r in closed]
            client_rows.append(dict(
                address=c.address, role=f"attacker ({cfg.attack})" if i in attackers else "honest",
                samples=len(c.x),
                accepted=sum(s in (UpdateStatus.SUBMITTED, UpdateStatus.CLAIMED) for s in statuses),
                excluded=sum(s == UpdateStatus.EXCLUDED for s in statuses),
                rejected=sum(s == UpdateStatus.REJECTED for s in statuses),
                reward=received.get(c.address, 0), slashed=slashes.get(c.address, 0),
                stake=fl.client(c.address).stake,
            ))
        final_acc = next((r.accuracy for r in reversed(rows) if r.status == "finalized"), float("nan"))
        committee = fl.committee()
        disputed = [r.round_id for r in rows if r.status == "disputed"]
        honest_slashed = [c["address"] for c in client_rows if c["role"] == "honest" and c["slashed"]]
        committee_data = dict(
            trusted=committee.trusted, verifiers=list(committee.verifiers),
            keys=["0x" + k.hex() for k in committee.keys], threshold=committee.threshold,
            attestation_period=fl.params().attestationPeriod, aggregator_bond=fl.params().aggregatorBond,
            rogue_aggregator=cfg.rogue_aggregator, rogue_verifier=cfg.rogue_verifier,
            disputed_rounds=disputed, bond_forfeited=forfeited, honest_clients_slashed=honest_slashed,
        )
        self.timings.seconds["chain"] = self.timings.seconds.get("chain", 0.0)
        phases = dict(self.timings.seconds)
        phases["other"] = max(0.0, wall - sum(v for k, v in phases.items() if k != "other"))

        self.log(report.clients_table(client_rows))
        self.log(report.timing_table(phases, wall))
        if committee.trusted:
            committee_line = "none: TRUSTED-AGGREGATOR mode (its proposals applied unchecked)"
        else:
            committee_line = (f"{len(committee.verifiers)} verifier(s), threshold {committee.threshold}"
                              + (f" (verifier 1 rogue: {cfg.rogue_verifier})" if cfg.rogue_verifier else ""))
            if cfg.rogue_aggregator:
                committee_line += f"; rogue aggregator ({cfg.rogue_aggregator})"
            if disputed:
                where = "to the treasury" if not fl.params().burns_slashes else "burned (no treasury)"
                committee_line += (f"; round(s) {', '.join(map(str, disputed))} disputed and failed: nothing "
                                   f"applied, bond {_fmt_eth(forfeited)} forfeited {where}")
            committee_line += f"; honest clients slashed: {len(honest_slashed)}"
        p = fl.params()
        mode_line = (f"PRIVATE (secure aggregation): t = {p.secThreshold}, {cfg.dropouts} dropout(s) a round; "
                     "nobody saw an update, anyone re-computes a round without a key" if p.private else
                     "robust (updates sealed to the aggregator and the committee)")
        summary = [
            f"mode                {mode_line}",
            f"committee           {committee_line}",
            f"contract            {fl.address} on {network_name()} (chain {chain.chain_id})",
            f"global model hash   0x{final_hash.hex()}",
            f"final accuracy      {final_acc:.4f}" + (f"   centralized baseline {baseline:.4f}   gap {100 * (baseline - final_acc):+.2f} points"
                                                    if baseline is not None else ""),
            f"slashed stake       {_fmt_eth(sum(slashes.values()))} "
            + ("burned (no treasury)" if fl.params().burns_slashes else f"to the treasury {fl.params().treasury}")
            + "; never to the reward pool",
            f"gas                 {self.meter.total:,} in all; per round "
            f"{int(np.mean([r.gas for r in rows if r.gas])) if any(r.gas for r in rows) else 0:,}",
            *self._dp_summary(fl, rows),
            f"wall time           {wall:.1f} s",
            f"output              {self.out}/ (report.json, rounds.csv, accuracy.png, final_model.keras)",
        ]
        self.log("\n".join(summary))

        data = dict(
            config={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
            network=network_name(), chain_id=chain.chain_id, contract=fl.address,
            model_spec=spec.to_dict(), model_spec_hash="0x" + spec.hash().hex(),
            training_workers=self.workers_used,
            final_model_hash="0x" + final_hash.hex(), final_accuracy=final_acc, baseline_accuracy=baseline,
            rounds=[asdict(r) for r in rows], clients=client_rows, timings=phases, wall_seconds=wall,
            treasury=fl.params().treasury, slashed_total=sum(slashes.values()),
            permissioned=fl.params().permissioned, committee=committee_data,
            trusted_aggregator=committee.trusted,
            gas_total=self.meter.total, gas_by_function=self.meter.gas, calls_by_function=self.meter.calls,
            privacy=self._dp_report(fl, rows), stopped=self.stopped,
            mode="private" if p.private else "robust",
            secagg=dict(threshold=p.secThreshold, clip=p.secClip / 1e6, scale_bits=p.secScaleBits,
                        ring_bits=p.secRingBits, dropouts_per_round=cfg.dropouts) if p.private else None,
        )
        report.write_json(self.out / "report.json", data)
        report.write_rounds_csv(self.out / "rounds.csv", rows)
        report.plot_accuracy(self.out / "accuracy.png", rows, baseline,
                             f"{cfg.dataset}, {cfg.partition}, {cfg.clients} clients, {cfg.strategy}")
        if fl.params().dp is not None:
            report.plot_accuracy_epsilon(self.out / "accuracy_epsilon.png", rows, baseline,
                                         f"{cfg.dataset}, {cfg.clients} clients, DP z = {fl.params().dp.noise:g}",
                                         mechanism="distributed DP" if p.private else "central DP")
        return FederationResult(
            address=fl.address, chain_id=chain.chain_id, network=network_name(), rows=rows,
            final_model_hash=final_hash, final_accuracy=final_acc, baseline_accuracy=baseline,
            clients=client_rows, timings=phases, wall_seconds=wall, gas_by_function=dict(self.meter.gas),
            out=self.out, report=data,
        )


def _dp_summary_lines(dp: Any, max_rounds: int, rows: list[report.RoundRow], stopped: str,
                      private: bool = False) -> list[str]:
    spent = next((r.epsilon for r in reversed(rows) if r.epsilon is not None), 0.0)
    budget = f" of the budget {dp.budget:g} ({max_rounds} round(s))" if dp.budget else " (no budget)"
    lines = [f"privacy             epsilon {spent:.4g}{budget} at delta {dp.delta:.3g}; C = {dp.clip:g}, "
             f"z = {dp.noise:g}; " + ("distributed DP: nobody holds the noise-free aggregate" if private else
                                      "central DP: the aggregator and the committee know the noise")]
    if stopped:
        lines.append(f"stopped             {stopped}")
    return lines


def _pool_of(spec: ModelSpec, clients: list[Client], workers: int) -> TrainingPool:
    """A training pool over every client's data, its workers named by the clients' addresses."""
    return TrainingPool(spec, [(c.x, c.y) for c in clients], workers=workers, names=[c.address for c in clients])


def run_federation(cfg: FederationConfig) -> FederationResult:
    return Federation(cfg).run()
