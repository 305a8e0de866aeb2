"""`ape run deploy` and `ape run admit`: job settings, the deployment record, opening a job."""
from __future__ import annotations


import json
import os
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from eth_utils import to_checksum_address

from .. import aggregation, codec
from ..chain import (
    ChainError,
    Committee,
    Deployment,
    FLContract,
    JobParams,
    Phase,
    WEI,
    ZERO_ADDRESS,
    DEFAULT_ADMIN_DELAY,
    is_dev_chain,
    load_deployment,
    network_name,
    save_deployment,
)
from ..logs import Cursor
from ..models import ARCHS, ModelSpec, initial_weights, num_params, spec_for_dataset, tensor_names
from ..privacy_rules import key, problem
from ..store import BlobStore, open_store
from .lifecycle import PartyError, _parse_bool, ensure_funds, parse_duration, parse_eth

STRATEGIES = tuple(aggregation.STRATEGIES)
MAX_UPDATES_PER_ROUND = 1000  # the contract's bound (FederatedLearning.MAX_UPDATES_PER_ROUND)
DEFAULT_DEPLOYMENTS = "deployments.json"
# Gas reserved by the funds pre-check (bench/gas.py measures about 5.2 M with 3 verifiers, 50 k for fundRewards).
DEPLOY_GAS = 5_500_000  # bench.gas: 5.15 M without a committee
DEPLOY_GAS_PER_VERIFIER = 60_000  # 5.31 M with 3 verifiers
FUND_GAS = 80_000
DEFAULT_KEY_FILE = "aggregator.key"
DEFAULT_STORE = "store"
# --------------------------------------------------------------------------- the job


@dataclass
class DeployConfig:
    """Everything `ape run deploy` needs; amounts in wei, durations in seconds."""

    min_stake: int = WEI // 10
    unbonding: int = 3600
    submission_period: int = 600
    grace: int = 600
    quorum: int = 1
    cap: int = 0  # maxUpdatesPerRound, 0 = the contract's MAX_UPDATES_PER_ROUND (1000)
    max_samples: int = 100_000
    slash_bps: int = 5000
    reward: int = WEI // 100  # per round
    norm_bound: float = 0.0  # 0 = none published
    dp_clip: float = 0.0  # central DP: clipping norm C of each accepted update's change; 0 = no DP
    dp_noise: float = 0.0  # noise multiplier z
    dp_delta: float = 0.0  # target delta; 0 = 1/N for the dataset's N training samples
    dp_budget: float = 0.0  # epsilon budget (no round starts past it); 0 = none
    privacy: str = "robust"  # robust (sealed updates) | secagg (private mode: secure aggregation)
    secagg_threshold: int = 2  # t: shares that recover a dropped participant
    secagg_clip: float = 4.0  # bound of each coordinate of a change (fixed point)
    secagg_scale_bits: int = 20  # fixed point 2**-bits per sample
    secagg_ring_bits: int = 64  # masked vectors mod 2**bits
    join_period: int = 300  # seconds after startRound in which clients join
    reveal_period: int = 300  # seconds after the deadline in which survivors reveal
    dataset: str = "digits"
    data_path: str | None = None
    arch: str = "mlp"
    seed: int = 0
    strategy: str = "fedavg"
    strategy_params: dict[str, Any] = field(default_factory=dict)
    fund: int = 0  # wei put in the reward pool at deployment
    treasury: str = ZERO_ADDRESS  # receives slashed stake; the zero address burns it
    permissioned: bool = False  # clients need a registrar's admission with a sample allowance
    admin_delay: int = DEFAULT_ADMIN_DELAY  # seconds before a nominated admin may accept the role
    verifiers: list[str] = field(default_factory=list)  # "ADDRESS:0xX25519KEY" per committee member
    threshold: int = 0  # m; 0 = a majority of the verifiers (k // 2 + 1)
    attestation_period: int = 600  # seconds the committee has to decide on a proposal
    aggregator_bond: int = WEI // 10  # wei the aggregator bonds to propose (with a committee)

    def committee(self) -> Committee:
        """The committee from the ``ADDRESS:KEY`` entries (checked); empty = trusted-aggregator mode."""
        from eth_utils import is_address

        addresses, keys = [], []
        for entry in self.verifiers:
            addr, sep, key = str(entry).partition(":")
            if not sep or not is_address(addr.strip()):
                raise PartyError(f"--verifier {entry!r}: write ADDRESS:KEY (the verifier's account, a colon, its "
                                 "X25519 public key as 0x + 64 hex digits; `ape run verifier --show-key` prints it)")
            try:
                raw = bytes.fromhex(key.strip().removeprefix("0x"))
            except ValueError:
                raw = b""
            if len(raw) != 32 or raw == bytes(32):
                raise PartyError(f"--verifier {entry!r}: the key must be 32 bytes, 0x + 64 hex digits, not zero")
            addresses.append(to_checksum_address(addr.strip()))
            keys.append(raw)
        if len(set(addresses)) != len(addresses):
            raise PartyError("a verifier is listed twice")
        k = len(addresses)
        m = self.threshold or (k // 2 + 1 if k else 0)
        if k and not 1 <= m <= k:
            raise PartyError(f"threshold must be in 1..{k} (the number of verifiers), got {self.threshold}")
        if not k and self.threshold:
            raise PartyError("threshold without verifiers: give each one with --verifier ADDRESS:KEY")
        return Committee(tuple(addresses), tuple(keys), m)

    def check(self) -> None:
        if self.quorum < 1:
            raise PartyError("quorum must be at least 1")
        if self.cap and self.cap < self.quorum:
            raise PartyError(f"cap ({self.cap}) is below the quorum ({self.quorum})")
        if not 0 <= self.cap <= MAX_UPDATES_PER_ROUND:
            raise PartyError(f"cap must be in 0..{MAX_UPDATES_PER_ROUND} (a round's verdicts must fit in a block); "
                             f"got {self.cap}")
        if self.quorum > (self.cap or MAX_UPDATES_PER_ROUND):
            raise PartyError(f"quorum ({self.quorum}) is above the cap of {self.cap or MAX_UPDATES_PER_ROUND} updates")
        if self.grace < 1:
            raise PartyError("grace must be at least 1 s: the aggregator needs a window in which nobody else "
                             "can cancel the round")
        from eth_utils import is_address

        if not is_address(self.treasury):
            raise PartyError(f"treasury must be an address (0x followed by 40 hex digits), got {self.treasury!r}")
        if not 0 <= self.slash_bps <= 10_000:
            raise PartyError(f"slash_bps must be in 0..10000, got {self.slash_bps}")
        if self.submission_period < 1:
            raise PartyError("submission_period must be at least 1 s")
        if self.max_samples < 1:
            raise PartyError("max_samples must be at least 1")
        if self.min_stake <= 0:
            raise PartyError("min_stake must be above 0")
        if self.norm_bound < 0:
            raise PartyError("norm_bound must be >= 0 (0 = none)")
        broken = problem(strategy=self.strategy, privacy=self.privacy, dp_clip=self.dp_clip, dp_noise=self.dp_noise,
                         dp_delta=self.dp_delta, dp_budget=self.dp_budget, secagg_clip=self.secagg_clip, spell=key)
        if broken:
            raise PartyError(broken)
        if self.privacy == "secagg":
            if self.join_period < 1 or self.reveal_period < 1:
                raise PartyError("join_period and reveal_period must be at least 1 s")
            try:
                self.secagg_params()
            except ValueError as exc:
                raise PartyError(str(exc)) from None
        if self.arch not in ARCHS:
            raise PartyError(f"arch must be one of {', '.join(ARCHS)}")
        if self.strategy not in STRATEGIES:
            raise PartyError(f"strategy must be one of {', '.join(STRATEGIES)}")
        if self.attestation_period < 1:
            raise PartyError("attestation_period must be at least 1 s")
        if self.aggregator_bond < 0:
            raise PartyError("aggregator_bond must be >= 0")
        self.committee()

    def secagg_params(self) -> Any:
        from ..secagg import SecAggParams

        return SecAggParams(self.secagg_clip, self.secagg_scale_bits, self.secagg_ring_bits, self.secagg_threshold)

    def private_fields(self) -> dict[str, Any]:
        """Private mode's on-chain parameters (empty in robust mode)."""
        if self.privacy != "secagg":
            return {}
        from ..secagg import job_fields

        return job_fields(self.secagg_params(), self.join_period, self.reveal_period)

    def dp_fields(self, num_samples: int, aggregator_private: bytes) -> dict[str, Any]:
        """The DP promise as the contract stores it (empty without dp_clip); a budget that cannot cover a
        round, or values that do not fit, are a PartyError."""
        from ..dp import DPError, job_fields

        try:
            return job_fields(self.dp_clip, self.dp_noise, self.dp_delta, self.dp_budget, num_samples,
                              aggregator_private)
        except DPError as exc:
            raise PartyError(str(exc)) from None

    def job_params(self, spec: ModelSpec, initial_hash: bytes, aggregator_key: bytes,
                   dp: dict[str, Any] | None = None) -> JobParams:
        return JobParams(
            minStake=self.min_stake, unbondingPeriod=self.unbonding, submissionPeriod=self.submission_period,
            gracePeriod=self.grace, quorum=self.quorum, maxUpdatesPerRound=self.cap,
            maxSamplesPerUpdate=self.max_samples, slashBps=self.slash_bps, rewardPerRound=self.reward,
            normBound=int(round(self.norm_bound * 1e6)), modelSpecHash=spec.hash(),
            initialModelHash=initial_hash, aggregatorKey=aggregator_key,
            treasury=to_checksum_address(self.treasury), permissioned=self.permissioned,
            attestationPeriod=self.attestation_period,
            aggregatorBond=self.aggregator_bond if self.verifiers else 0,
            **(dp or {}),
        )


_ETH_FIELDS = {"min_stake", "reward", "fund", "aggregator_bond"}
_DURATION_FIELDS = {"unbonding", "submission_period", "grace", "admin_delay", "attestation_period", "join_period",
                    "reveal_period"}
_INT_FIELDS = {"quorum", "cap", "max_samples", "slash_bps", "seed", "threshold", "secagg_threshold",
               "secagg_scale_bits", "secagg_ring_bits"}
# Shorthands for strategy parameters, as `ape run federated_round` names them.
_STRATEGY_SHORTHANDS = {"trim_beta": "beta", "krum_f": "f", "krum_m": "m"}


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A YAML or JSON mapping of deploy settings (keys as the options, '-' or '_')."""
    file = Path(path).expanduser()
    try:
        text = file.read_text()
    except OSError as exc:
        raise PartyError(f"cannot read config file {file}: {exc.strerror}") from None
    try:
        if file.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - yaml and json raise their own errors
        kind = "JSON" if file.suffix.lower() == ".json" else "YAML"
        raise PartyError(f"config file {file} is not valid {kind}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PartyError(f"config file {file} must hold a mapping of settings, not a {type(data).__name__}")
    return data


def make_deploy_config(*sources: dict[str, Any]) -> DeployConfig:
    """Defaults, overridden by each source in turn (the config file, then the command-line options).

    None values are skipped (an option that was not given)."""
    names = {f.name for f in fields(DeployConfig)}
    values: dict[str, Any] = {}
    strategy_params: dict[str, Any] = {}
    explicit: set[str] = set()  # keys given in strategy_params (shorthands may not apply to the strategy)
    for source in sources:
        for raw_key, value in source.items():
            if value is None:
                continue
            key = str(raw_key).replace("-", "_")
            if key in ("verifier", "verifiers"):
                items = [value] if isinstance(value, str) else list(value)
                if items:
                    values["verifiers"] = [str(x) for x in items]
                continue
            if key in _STRATEGY_SHORTHANDS:
                strategy_params[_STRATEGY_SHORTHANDS[key]] = value
                continue
            if key == "strategy_params":
                if not isinstance(value, dict):
                    raise PartyError("strategy_params must be a mapping, e.g. {beta: 0.2}")
                strategy_params.update(value)
                explicit.update(value)
                continue
            if key not in names:
                allowed = sorted((names - {"strategy_params"}) | set(_STRATEGY_SHORTHANDS) | {"strategy_params"})
                raise PartyError(f"unknown deploy setting {raw_key!r}; known: {', '.join(allowed)}")
            try:
                if key in _ETH_FIELDS:
                    value = parse_eth(value, key)
                elif key in _DURATION_FIELDS:
                    value = parse_duration(value, key)
                elif key in _INT_FIELDS:
                    value = int(value)
                elif key in ("norm_bound", "dp_clip", "dp_noise", "dp_delta", "dp_budget", "secagg_clip"):
                    value = float(value)
                elif key == "permissioned":
                    value = _parse_bool(value, key)
                else:
                    value = str(value)
            except (TypeError, ValueError):
                raise PartyError(f"deploy setting {key}: cannot read {value!r}") from None
            values[key] = value
    cfg = DeployConfig(**values)
    strategy = cfg.strategy
    allowed_params = {"fedavg": set(), "median": set(), "trimmed_mean": {"beta"}, "krum": {"f"},
                      "multi_krum": {"f", "m"}}[strategy] if strategy in STRATEGIES else set()
    unknown = sorted(explicit - allowed_params)
    if unknown:
        raise PartyError(f"strategy {strategy!r} takes no parameter(s) {unknown}; it takes "
                         f"{sorted(allowed_params) or 'none'}")
    cfg.strategy_params = {k: v for k, v in strategy_params.items() if k in allowed_params}
    if strategy == "trimmed_mean":
        cfg.strategy_params.setdefault("beta", 0.2)
    if strategy in ("krum", "multi_krum"):
        cfg.strategy_params.setdefault("f", 1)
    cfg.check()
    return cfg


@dataclass
class Job:
    """A deployed job as a party sees it: the record, the contract, the model spec and the store."""

    deployment: Deployment
    fl: FLContract
    spec: ModelSpec
    store: BlobStore
    chain_id: int
    network: str
    cursor_file: Path | None = None  # where parties keep their log cursors (next to the deployments file)

    def cursor(self, what: str) -> Cursor:
        """A persistent log cursor of this job (kept across restarts), starting at the deploy block."""
        return Cursor.load(self.cursor_file, f"{self.chain_id}:{self.fl.address}:{what}", self.fl.deploy_block)

    @property
    def strategy(self) -> str:
        return str(self.deployment.extra.get("strategy", "fedavg"))

    @property
    def strategy_params(self) -> dict[str, Any]:
        return dict(self.deployment.extra.get("strategy_params", {}) or {})

    def model_locator(self, model_hash: bytes) -> str | None:
        """Where a global model was published (its proposal's locator, or the deployment's initial one).

        Walks the rounds back from the newest and reads one block per candidate (the proposal's),
        so the cost does not grow with the job's age in blocks.
        """
        fl = self.fl
        if model_hash == fl.params().initialModelHash:
            return self.deployment.extra.get("initial_model_locator")
        for r in range(fl.current_round(), 0, -1):
            info = fl.round(r)
            if info.phase == Phase.FINALIZED and info.model_hash == model_hash:
                return fl.model_locator(r)
        return None

    def prefetch_model(self, model_hash: bytes, hint: Any = None) -> bytes:
        """The verified global model blob, fetched with its published locator (IPFS learns the CID).

        A store that already knows the blob reads no chain state; `hint`, the roundView of a round
        seen decided, gives the locator from its proposal's block without walking the rounds."""
        if self.store.has(model_hash):
            return self.store.get(model_hash)
        if hint is not None and hint.round.phase == Phase.FINALIZED and hint.round.model_hash == model_hash:
            return self.store.get(model_hash, self.fl.model_locator(hint.round_id, hint.proposal))
        return self.store.get(model_hash, self.model_locator(model_hash))


# Confirmations a party waits for before acting on chain state, on a live network (0 on dev chains).
LIVE_CONFIRMATIONS = 2


def open_job(deployments: str | os.PathLike[str], store: str | None = None, *, ipfs_index: str | None = None,
             confirmations: int | None = None) -> Job:
    """The job recorded for the connected network, checked against the chain.

    `confirmations`: blocks a state must be under before the party acts on it (None: 0 on a dev
    chain, LIVE_CONFIRMATIONS elsewhere).
    """
    from ape import chain

    net = network_name()
    path = Path(deployments).expanduser()
    dep = load_deployment(path, net)
    if dep is None:
        known = sorted(json.loads(path.read_text())) if path.exists() else []
        raise PartyError(
            f"no deployment for {net} in {path}"
            + (f" (it has {', '.join(known)})" if known else " (the file does not exist)")
            + f"; deploy first with `ape run deploy --network {net} --account ...`, or pass --deployments"
        )
    if dep.chain_id != chain.chain_id:
        raise PartyError(f"{path} records the job on chain {dep.chain_id}, but the node is chain {chain.chain_id}; "
                         "wrong --network, or the node was restarted: deploy again")
    try:
        fl = FLContract.at(dep.address, deploy_block=dep.block)
    except ChainError as exc:
        raise PartyError(f"{exc} (address {dep.address} from {path}; a dev chain that was restarted loses its "
                         "contracts: deploy again)") from None
    if confirmations is not None and confirmations < 0:
        raise PartyError(f"--confirmations must be 0 or more, got {confirmations}")
    fl.confirmations = confirmations if confirmations is not None else (0 if is_dev_chain() else LIVE_CONFIRMATIONS)
    spec = ModelSpec.from_json(json.dumps(dep.model_spec))
    if spec.hash() != fl.params().modelSpecHash:
        raise PartyError(f"the model spec in {path} does not hash to the contract's modelSpecHash: the file was edited")
    store_spec = store or dep.extra.get("store") or DEFAULT_STORE
    return Job(dep, fl, spec, open_store(str(store_spec), ipfs_index=ipfs_index), int(chain.chain_id), net,
               cursor_file=cursor_file_of(path))


def cursor_file_of(deployments: Path) -> Path:
    """deployments.json -> deployments.cursors.json: the parties' log cursors, beside the job's record."""
    return deployments.with_name(deployments.stem + ".cursors.json")


@dataclass
class DeployResult:
    deployment: Deployment
    key_file: Path
    key_generated: bool
    replaced: str | None
    gas: int


def deploy_job(account: Any, cfg: DeployConfig, *, aggregator: str | None = None,
               key_file: str | os.PathLike[str] | None = None, store: str = DEFAULT_STORE,
               deployments: str | os.PathLike[str] = DEFAULT_DEPLOYMENTS, replace: bool = False,
               log: Callable[[str], None] = print) -> DeployResult:
    """Deploys a job and records it; the sealing key is read from, or generated into, `key_file`."""
    from ape import chain

    from ..data import load_dataset
    from ..sealing import generate_keypair, load_private_key, public_key_of, save_private_key

    net = network_name()
    dep_path = Path(deployments).expanduser()
    old = load_deployment(dep_path, net)
    replaced = None
    if old is not None:
        alive = old.chain_id == chain.chain_id and bool(chain.provider.get_code(old.address))
        if alive and not replace:
            raise PartyError(f"{dep_path} already records a job on {net} at {old.address} (block {old.block}); "
                             "pass --replace to deploy a new job in its place, or --deployments another file")
        replaced = old.address

    # The model the job trains: sized for the dataset, seeded initial weights in the store.
    ds = load_dataset(cfg.dataset, path=cfg.data_path, seed=cfg.seed)
    spec = spec_for_dataset(ds, cfg.arch)
    blob_store = open_store(store)
    initial_hash = blob_store.put(codec.encode(initial_weights(spec, cfg.seed), tensor_names(spec)))
    initial_locator = blob_store.locator(initial_hash)

    # The aggregator's sealing key: updates are encrypted to its public half.
    key_path = Path(key_file or DEFAULT_KEY_FILE).expanduser()
    generated = not key_path.exists()
    if generated:
        save_private_key(key_path, generate_keypair().private)  # mode 0600, never printed
    private = load_private_key(key_path)
    public = public_key_of(private)

    from eth_utils import is_address, to_checksum_address

    if aggregator is not None and not is_address(aggregator):
        raise PartyError(f"--aggregator must be an address (0x followed by 40 hex digits), got {aggregator!r}")
    aggregator = to_checksum_address(aggregator or str(account.address))
    params = cfg.job_params(spec, initial_hash, public,
                            {**cfg.dp_fields(len(ds.y_train), private), **cfg.private_fields()})
    gas = DEPLOY_GAS + DEPLOY_GAS_PER_VERIFIER * len(cfg.verifiers) + (FUND_GAS if cfg.fund else 0)
    ensure_funds(account, cfg.fund, "deploying and funding the rewards", gas=gas)
    log(f"deploying from {account.address}: {spec.arch} for {cfg.dataset} ({num_params(spec):,} parameters), "
        f"initial model 0x{initial_hash.hex()[:10]}… in {blob_store}")
    committee = cfg.committee()
    if aggregator in committee.verifiers:
        raise PartyError(f"{aggregator} is both the aggregator and a verifier: the committee checks the aggregator, "
                         "so they must be different accounts")
    fl = FLContract.deploy(account, params, str(account.address), aggregator, admin_delay=cfg.admin_delay,
                           committee=committee)
    if cfg.fund:
        fl.fund(account, cfg.fund)
    dep = Deployment(
        network=net, chain_id=int(chain.chain_id), address=fl.address, block=fl.deploy_block,
        params=params.to_json(), model_spec=spec.to_dict(), aggregator=aggregator, admin=str(account.address),
        extra=dict(
            strategy=cfg.strategy, strategy_params=cfg.strategy_params, dataset=cfg.dataset, arch=cfg.arch,
            seed=cfg.seed, store=str(store), initial_model_locator=initial_locator,
            aggregator_public_key="0x" + public.hex(), model_spec_hash=spec.hash_hex(),
            num_params=num_params(spec), funded=cfg.fund, deployed_at=int(time.time()),
            committee=dict(verifiers=list(committee.verifiers), keys=["0x" + k.hex() for k in committee.keys],
                           threshold=committee.threshold),
        ),
    )
    save_deployment(dep_path, dep)
    return DeployResult(dep, key_path, generated, replaced, fl.meter.total)


def admit_clients(account: Any, job: "Job", clients: list[str], samples: int,
                  log: Callable[[str], None] = print) -> None:
    """The registrar admits each client of a permissioned job with a sample allowance per update."""
    from eth_utils import is_address

    fl = job.fl
    params = fl.params()
    if not params.permissioned:
        raise PartyError(f"the job at {fl.address} is open (deployed without --permissioned): anyone with the stake "
                         "may register, there is nobody to admit")
    if not fl.has_role("registrar", str(account.address)):
        raise PartyError(f"{account.address} does not hold the registrar role of {fl.address}; the deploying admin "
                         "holds it, or whoever the admin granted it to")
    if not 0 <= samples <= params.maxSamplesPerUpdate:
        raise PartyError(f"--samples must be in 0..{params.maxSamplesPerUpdate} (the job's cap per update), "
                         f"got {samples}")
    bad = [c for c in clients if not is_address(c)]
    if bad:
        raise PartyError(f"not an address: {', '.join(bad)} (0x followed by 40 hex digits)")
    for c in clients:
        fl.admit(account, to_checksum_address(c), samples)
        log(f"{'revoked' if samples == 0 else 'admitted'} {to_checksum_address(c)}"
            + (f" with an allowance of {samples} samples per update" if samples else ""))
