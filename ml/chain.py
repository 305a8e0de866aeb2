"""Typed wrapper over the deployed FederatedLearning contract.

The rest of the package talks to the chain only through this module, so that
reverts come back as :class:`ChainError` with the contract's custom error name,
its arguments and a sentence on what to do, and so that gas is counted in one
place.
"""
from __future__ import annotations

import enum
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:
    from .dp import DPParams
    from .private import Participant
    from .secagg import SecAggParams

ZERO32 = b"\x00" * 32
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
WEI = 10**18  # wei per ether
# Seconds a newly nominated admin waits before it can accept the role (two-step transfer).
DEFAULT_ADMIN_DELAY = 86_400


class Phase(enum.IntEnum):
    NONE = 0
    OPEN = 1
    PROPOSED = 2  # an outcome awaits the verifier committee
    FINALIZED = 3
    FAILED = 4  # below the quorum (rejections slashed, no model, no reward), or the proposal was disputed
    CANCELLED = 5


class UpdateStatus(enum.IntEnum):
    NONE = 0
    SUBMITTED = 1  # accepted once the round is finalized
    REJECTED = 2
    EXCLUDED = 3
    CLAIMED = 4


class ClientStatus(enum.IntEnum):
    NONE = 0
    ACTIVE = 1
    EXITING = 2


# What to do about each custom error, for people reading a failed command.
ERROR_HINTS: dict[str, str] = {
    "InsufficientStake": "send at least the job's minimum stake with register",
    "AlreadyRegistered": "this account is registered already; use topUp to add stake",
    "NotRegistered": "register the account first",
    "NotActive": "the account is not an active client (never registered, or exiting)",
    "StakeBelowMinimum": "a slash took the stake below the minimum; call topUp before submitting",
    "ZeroEncryptionKey": "give a non-zero 32-byte X25519 public key",
    "ZeroValue": "send a non-zero amount of ether",
    "NotExiting": "call requestExit first, then wait for the unbonding period",
    "StillUnbonding": "the stake is still unbonding; try again after unlockTime",
    "UpdatePending": "an update of this client waits in the open round; wait until it is finalized or cancelled",
    "RoundStillOpen": "finalize or cancel the open round first",
    "RoundNotOpen": "that round is not open (never started, finalized or cancelled)",
    "NotCurrentRound": "the client is behind: submit to the current round",
    "DeadlinePassed": "the round's submission deadline has passed; wait for the next round",
    "DeadlineNotReached": "not every active client has submitted; wait for the deadline",
    "GracePeriodNotOver": "only the aggregator may cancel before the grace period after the deadline is over",
    "AlreadySubmitted": "this client already submitted an update in this round (one per round)",
    "ZeroCommitment": "the commitment must be the keccak-256 of the sealed blob, never zero",
    "CommitmentAlreadyUsed": "this client committed to this exact blob before (a replay); seal the update afresh",
    "NotAdmitted": "this job is permissioned: ask its registrar to admit the account (ape run admit) first",
    "AboveAllowance": "the sample count is above the allowance the registrar gave this client",
    "NotPermissioned": "this job is open: anyone with the stake may register, there is nobody to admit",
    "ModelBelowQuorum": "a round below the quorum records no model: finalize it with a zero model hash",
    "NoTreasury": "this job burns slashed stake (no treasury), there is nothing to send",
    "NotVerifier": "the account is not one of the job's verifiers (fixed at deployment)",
    "AlreadyVoted": "this verifier already attested or disputed this round's proposal (once each)",
    "DigestMismatch": "the verifier re-computed another outcome: dispute the proposal instead of attesting",
    "DisputeMatchesProposal": "the verifier's digest equals the proposal's: attest instead of disputing",
    "NotProposed": "that round has no proposal awaiting the committee (not proposed yet, or already closed)",
    "ProposalExpired": "the attestation period is over: anyone may now expireProposal the round",
    "ProposalNotExpired": "the committee still has time to attest; expire the proposal after expiresAt",
    "BondTooLow": "the aggregator must bond the job's aggregatorBond before proposing (postBond)",
    "ProposalPending": "a proposal of this aggregator awaits the committee; withdraw the bond after it closes",
    "VerdictsNotSorted": "rejected and excluded lists must be strictly ascending by address (no duplicates)",
    "ReasonsMismatch": "give one reason code per rejected client",
    "ZeroReason": "every rejected client needs a non-zero reason code",
    "ZeroSamples": "an update must be trained on at least one sample",
    "TooManySamples": "the sample count is above the job's cap per update",
    "RoundFull": "the round reached its cap on updates; wait for the next round",
    "ZeroModelHash": "the new model hash must be the keccak-256 of the published model blob",
    "InvalidVerdict": "a rejected/excluded client did not submit in this round, or is listed twice",
    "RoundNotFinalized": "rewards can be claimed only for a finalized round",
    "NothingToClaim": "no accepted, unclaimed update of this client in that round",
    "NothingOwed": "nothing to withdraw; claim a round's reward first",
    "AccessControlUnauthorizedAccount": "the account lacks the role this function needs",
    "AccessControlEnforcedDefaultAdminRules": "the admin role moves only by the two-step transfer "
                                              "(beginDefaultAdminTransfer, then acceptDefaultAdminTransfer after the delay)",
    "InvalidParams": "fix the deployment parameter named in the message",
    "ZeroAddress": "admin, aggregator and admitted clients must be real addresses",
    "PrivacyBudgetSpent": "the job's epsilon budget allows no further round (dpMaxRounds): deploy a new job",
    "NotPrivate": "this job runs in robust mode: there is no join or reveal (submit sealed updates)",
    "JoinClosed": "the round's participants are fixed (join deadline passed or everyone joined); wait for the next",
    "JoinStillOpen": "participants may still join: mask and submit once the join deadline passed or all joined",
    "AlreadyJoined": "this client already joined this round (once per round)",
    "NotJoined": "in a private job only a participant that joined (and, to reveal, submitted) may do this",
    "NotEligible": "the client registered after the round started: it may take part from the next round",
    "RevealClosed": "the reveal deadline has passed: the outcome rejects survivors that did not reveal",
    "RevealNotOpen": "reveals open once submissions close (the deadline, or every participant submitted)",
    "AlreadyRevealed": "this survivor already revealed in this round (once per round)",
}


class ChainError(RuntimeError):
    """A contract call reverted (with its custom error) or the node failed."""

    def __init__(self, action: str, error_name: str, inputs: dict[str, Any] | None = None, detail: str = "",
                 reverted: bool = True):
        self.action = action
        self.error_name = error_name
        self.inputs = dict(inputs or {})
        self.reverted = reverted
        args = ", ".join(f"{k}={_fmt(v)}" for k, v in self.inputs.items())
        hint = ERROR_HINTS.get(error_name, detail)
        msg = f"{action} {'reverted' if reverted else 'failed'} with {error_name}({args})"
        if hint:
            msg += f": {hint}"
        super().__init__(msg)


def _fmt(v: Any) -> str:
    if isinstance(v, (bytes, bytearray)):
        return "0x" + bytes(v).hex()
    return str(v)


def to_bytes32(value: bytes | str) -> bytes:
    if isinstance(value, str):
        value = bytes.fromhex(value[2:] if value.startswith("0x") else value)
    value = bytes(value)
    if len(value) != 32:
        raise ValueError(f"expected 32 bytes, got {len(value)}")
    return value


@dataclass(frozen=True)
class JobParams:
    """Mirror of the contract's Params struct (constructor arguments)."""

    minStake: int
    unbondingPeriod: int
    submissionPeriod: int
    gracePeriod: int
    quorum: int
    maxUpdatesPerRound: int
    maxSamplesPerUpdate: int
    slashBps: int
    rewardPerRound: int
    normBound: int  # L2 bound of an update's delta in 1e-6 units; 0 = none
    modelSpecHash: bytes
    initialModelHash: bytes
    aggregatorKey: bytes
    treasury: str = "0x0000000000000000000000000000000000000000"  # receives slashed stake; zero burns it
    permissioned: bool = False  # clients need a registrar's admission and submit at most their allowance
    attestationPeriod: int = 600  # seconds the committee has to attest a proposal
    aggregatorBond: int = 0  # wei the aggregator must bond to propose (with a committee)
    dpClip: int = 0  # DP clipping norm C in 1e-6 units; 0 = no differential privacy
    dpNoise: int = 0  # noise multiplier z in 1e-6 units
    dpDelta: int = 0  # target delta in 1e-18 units
    dpBudget: int = 0  # epsilon budget in 1e-6 units; 0 = none
    dpMaxRounds: int = 0  # rounds the budget allows (the contract refuses more); 0 = unbounded
    dpSeedCommitment: bytes = ZERO32  # keccak of the aggregator's noise secret
    privacy: int = 0  # 0 = robust (sealed updates), 1 = private (secure aggregation, masked updates)
    secClip: int = 0  # private mode: bound of each coordinate of a change, 1e-6 units
    secScaleBits: int = 0  # private mode: fixed point 2**-secScaleBits per sample
    secRingBits: int = 0  # private mode: masked vectors mod 2**secRingBits
    secThreshold: int = 0  # private mode: t, shares that recover a dropped participant
    joinPeriod: int = 0  # private mode: seconds after startRound in which clients join
    revealPeriod: int = 0  # private mode: seconds after the deadline in which survivors reveal

    @property
    def norm_bound(self) -> float | None:
        return self.normBound / 1e6 if self.normBound else None

    @property
    def private(self) -> bool:
        """Private mode (secure aggregation): masked updates, public; the aggregate is re-computable by anyone."""
        return self.privacy == 1

    @property
    def secagg(self) -> SecAggParams | None:
        """A private job's secure-aggregation parameters (None in robust mode)."""
        if not self.private:
            return None
        from .secagg import SecAggParams

        return SecAggParams(self.secClip / 1e6, self.secScaleBits, self.secRingBits, self.secThreshold)

    @property
    def dp(self) -> DPParams | None:
        """The job's differential-privacy promise, or None for a job without DP."""
        if not self.dpClip:
            return None
        from .dp import DPParams

        return DPParams(self.dpClip / 1e6, self.dpNoise / 1e6, self.dpDelta / 1e18,
                        self.dpBudget / 1e6 if self.dpBudget else None)

    @property
    def central_dp(self) -> DPParams | None:
        """The DP promise when the aggregator adds the noise (robust mode); None without DP, or in private
        mode, where each client adds its share before masking."""
        return None if self.private else self.dp

    @property
    def noise_sealed(self) -> bool:
        """Central DP with noise: the round's noise secret travels sealed in each proposal's evidence."""
        dp = self.central_dp
        return dp is not None and dp.private

    def to_json(self) -> dict[str, Any]:
        return {k: ("0x" + v.hex() if isinstance(v, bytes) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_struct(cls, s: Any) -> "JobParams":
        d = {k: getattr(s, k) for k in cls.__dataclass_fields__}
        for k in ("modelSpecHash", "initialModelHash", "aggregatorKey", "dpSeedCommitment"):
            d[k] = bytes(d[k])
        d["treasury"] = str(d["treasury"])
        d["permissioned"] = bool(d["permissioned"])
        return cls(**{k: (v if isinstance(v, (bytes, str, bool)) else int(v)) for k, v in d.items()})

    @property
    def burns_slashes(self) -> bool:
        return int(self.treasury, 16) == 0


@dataclass(frozen=True)
class RoundInfo:
    round_id: int
    base_model_hash: bytes
    model_hash: bytes
    started_at: int
    deadline: int
    submissions: int
    rejected: int
    excluded: int
    claims: int
    eligible: int
    eligible_submitted: int
    start_block: int
    closed_block: int  # 0 while open or proposed
    phase: Phase
    submitted_weight: int
    accepted_weight: int
    reward: int
    reward_claimed: int

    @property
    def accepted(self) -> int:
        return self.submissions - self.rejected - self.excluded


@dataclass(frozen=True)
class Committee:
    """The k verifiers (with their X25519 keys) and the threshold m; k = 0 is trusted-aggregator mode."""

    verifiers: tuple[str, ...] = ()
    keys: tuple[bytes, ...] = ()
    threshold: int = 0

    @property
    def trusted(self) -> bool:
        return not self.verifiers

    @property
    def disputes_to_fail(self) -> int:
        return len(self.verifiers) - self.threshold + 1

    def disputed(self, phase: "Phase", proposal: "ProposalInfo") -> bool:
        """Whether a round failed because the committee disputed its proposal (not below the quorum)."""
        return phase == Phase.FAILED and not self.trusted and proposal.disputes >= self.disputes_to_fail

    def to_struct(self) -> dict[str, Any]:
        return dict(verifiers=list(self.verifiers), keys=[to_bytes32(k) for k in self.keys], threshold=self.threshold)


def _address_key(address: str) -> int:
    return int(address, 16)


@dataclass(frozen=True)
class Outcome:
    """What the aggregator proposes and the verifiers attest; lists kept as the contract wants them."""

    model_hash: bytes  # ZERO32 below the quorum
    rejected: tuple[str, ...] = ()
    reasons: tuple[int, ...] = ()
    excluded: tuple[str, ...] = ()
    evidence_hash: bytes = ZERO32
    evidence_locator: str = ""
    model_locator: str = ""

    @classmethod
    def of(cls, model_hash: bytes | None, rejected: dict[str, int], excluded: Sequence[str],
           evidence_hash: bytes = ZERO32, evidence_locator: str = "", model_locator: str = "") -> "Outcome":
        """Canonical form: verdict lists ascending by address (the order the contract checks)."""
        from eth_utils import to_checksum_address

        rej = sorted((to_checksum_address(a) for a in rejected), key=_address_key)
        codes = {to_checksum_address(a): int(c) for a, c in rejected.items()}
        return cls(model_hash or ZERO32, tuple(rej), tuple(codes[a] for a in rej),
                   tuple(sorted((to_checksum_address(a) for a in excluded), key=_address_key)),
                   evidence_hash, evidence_locator, model_locator)

    def to_struct(self) -> dict[str, Any]:
        return dict(modelHash=to_bytes32(self.model_hash), rejected=list(self.rejected), reasons=list(self.reasons),
                    excluded=list(self.excluded), evidenceHash=to_bytes32(self.evidence_hash),
                    evidenceLocator=self.evidence_locator, modelLocator=self.model_locator)

    def digest(self, chain_id: int, contract: str, round_id: int) -> bytes:
        """keccak(abi.encode(chainid, contract, round, model, rejected, reasons, excluded, evidence)), as on chain."""
        from eth_abi import encode
        from eth_utils import keccak

        return keccak(encode(
            ["uint256", "address", "uint256", "bytes32", "address[]", "uint8[]", "address[]", "bytes32"],
            [int(chain_id), contract, int(round_id), to_bytes32(self.model_hash), list(self.rejected),
             list(self.reasons), list(self.excluded), to_bytes32(self.evidence_hash)]))


@dataclass(frozen=True)
class ProposalInfo:
    digest: bytes
    model_hash: bytes
    proposer: str
    proposed_at: int
    proposed_block: int
    attestations: int
    disputes: int


@dataclass(frozen=True)
class UpdateInfo:
    commitment: bytes
    samples: int
    status: UpdateStatus


@dataclass(frozen=True)
class ClientInfo:
    stake: int
    encryption_key: bytes
    exit_requested_at: int
    last_submitted_round: int
    counted_from: int
    status: ClientStatus


@dataclass(frozen=True)
class Submission:
    """One UpdateSubmitted event."""

    round_id: int
    client: str
    commitment: bytes
    samples: int
    locator: str
    block_number: int


@dataclass
class GasMeter:
    """Gas and time spent in transactions, by function name."""

    gas: dict[str, int] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, fn: str, gas_used: int, seconds: float) -> None:
        self.gas[fn] = self.gas.get(fn, 0) + int(gas_used)
        self.calls[fn] = self.calls.get(fn, 0) + 1
        self.seconds += seconds

    @property
    def total(self) -> int:
        return sum(self.gas.values())

    def snapshot(self) -> tuple[int, float]:
        return self.total, self.seconds


def _revert_data(exc: Exception) -> bytes | None:
    """The raw revert data of an undecoded revert, if the exception carries it (bytes, its repr, or hex)."""
    import ast

    for value in (getattr(exc, "revert_message", None), getattr(exc, "message", None), str(exc)):
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        if not isinstance(value, str):
            continue
        text = value.strip()
        if text[:2] in ('b"', "b'"):
            try:
                data = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                continue
            if isinstance(data, bytes):
                return data
        if re.fullmatch(r"0x(?:[0-9a-fA-F]{2}){4,}", text):
            return bytes.fromhex(text[2:])
    return None


def _decode_with_abi(action: str, data: bytes, contract_type: Any) -> ChainError | None:
    """Decode a custom error by its selector in the contract's own ABI (Ape's lookup by address can miss)."""
    from eth_abi import decode as abi_decode
    from eth_utils import keccak

    if contract_type is None or len(data) < 4:
        return None
    for abi in getattr(contract_type, "abi", []):
        if getattr(abi, "type", None) != "error":
            continue
        types = [inp.canonical_type for inp in abi.inputs]
        if keccak(text=f"{abi.name}({','.join(types)})")[:4] != data[:4]:
            continue
        try:
            values = abi_decode(types, data[4:])
        except Exception:  # noqa: BLE001 - a selector clash with garbage arguments: not this error
            return None
        return ChainError(action, abi.name, {inp.name or f"arg{i}": v for i, (inp, v) in
                                              enumerate(zip(abi.inputs, values))})
    return None


def _decode_error(action: str, exc: Exception, contract_type: Any = None) -> ChainError:
    from ape.exceptions import ContractLogicError, CustomError

    if isinstance(exc, CustomError):
        name = type(exc).__name__
        inputs = dict(getattr(exc, "inputs", {}) or {})
        return ChainError(action, name, inputs)
    if isinstance(exc, ContractLogicError):
        data = _revert_data(exc)
        decoded = _decode_with_abi(action, data, contract_type) if data else None
        if decoded is not None:
            return decoded
        return ChainError(action, "Revert", {}, detail=str(exc) or "reverted without a reason")
    return ChainError(action, type(exc).__name__, {}, detail=str(exc), reverted=False)


# How long a party keeps waiting for a transaction the node accepted but has not mined (after Ape's own
# acceptance timeout): a local dev chain is nudged to mine meanwhile; a live network only needs patience.
DEV_CHAIN_MINING_WAIT = 60.0
LIVE_NETWORK_MINING_WAIT = 600.0


def _mined(receipt: Any) -> bool:
    number = getattr(receipt, "block_number", None)
    return number is not None and number >= 0


def _tx_hash(exc: Exception, action: str) -> str:
    match = re.search(r"0x[0-9a-fA-F]{64}", str(exc))
    if not match:
        raise _decode_error(action, exc) from None
    return match.group(0)


def wait_until_mined(action: str, txn_hash: Any, wait: float | None = None) -> Any:
    """The receipt (maybe of a revert) of a transaction the node accepted but has not put in a block yet.

    On a local dev chain a ready transaction can stay in the pool: Anvil's automine
    sometimes misses one while several parties send at once, and a node started
    with --no-mining never mines by itself. There a block is mined to take it in.
    On a live network the transaction is only slow (a low fee, a busy network): wait.
    """
    from ape import chain
    from ape.exceptions import TransactionNotFoundError

    txn_hash = txn_hash if isinstance(txn_hash, str) else "0x" + bytes(txn_hash).hex()
    dev = is_dev_chain()
    wait = wait if wait is not None else (DEV_CHAIN_MINING_WAIT if dev else LIVE_NETWORK_MINING_WAIT)
    deadline = time.monotonic() + wait
    provider = chain.provider
    while True:
        try:
            receipt = provider.get_receipt(txn_hash, timeout=2 if dev else 30)
            break
        except TransactionNotFoundError:
            if time.monotonic() > deadline:
                raise _not_mined(action, txn_hash, f"{wait:.0f} s more", dev) from None
            if dev:
                _mine_one_block(provider)
    return receipt


def _not_mined(action: str, txn_hash: str, waited: str, dev: bool) -> ChainError:
    """A transaction the node accepted and did not put in a block within `waited`, and what to do."""
    return ChainError(action, "TransactionNotMined", {"tx": txn_hash}, reverted=False, detail=(
        f"the node accepted the transaction but did not mine it within {waited}; "
        + ("check that the local node mines (Anvil without --no-mining)" if dev else
           "it may still be mined: run the same command again later (it resumes from the chain), or raise the fee")))


def _mine_one_block(provider: Any) -> None:
    try:
        provider.mine()
    except Exception:  # noqa: BLE001 - Ape's generic node provider (Ganache) has no mine(): ask the node
        provider.make_request("evm_mine", [])


def _round_info(round_id: int, r: Any) -> RoundInfo:
    return RoundInfo(
        round_id=round_id,
        base_model_hash=bytes(r.baseModelHash),
        model_hash=bytes(r.modelHash),
        started_at=int(r.startedAt),
        deadline=int(r.deadline),
        submissions=int(r.submissions),
        rejected=int(r.rejected),
        excluded=int(r.excluded),
        claims=int(r.claims),
        eligible=int(r.eligible),
        eligible_submitted=int(r.eligibleSubmitted),
        start_block=int(r.startBlock),
        closed_block=int(r.closedBlock),
        phase=Phase(int(r.phase)),
        submitted_weight=int(r.submittedWeight),
        accepted_weight=int(r.acceptedWeight),
        reward=int(r.reward),
        reward_claimed=int(r.rewardClaimed),
    )


def _update_info(u: Any) -> UpdateInfo:
    return UpdateInfo(bytes(u.commitment), int(u.samples), UpdateStatus(int(u.status)))


def _client_info(c: Any) -> ClientInfo:
    return ClientInfo(int(c.stake), bytes(c.encryptionKey), int(c.exitRequestedAt),
                      int(c.lastSubmittedRound), int(c.countedFrom), ClientStatus(int(c.status)))


def _proposal_info(p: Any) -> ProposalInfo:
    return ProposalInfo(bytes(p.digest), bytes(p.modelHash), str(p.proposer), int(p.proposedAt),
                        int(p.proposedBlock), int(p.attestations), int(p.disputes))


@dataclass(frozen=True)
class RoundView:
    """The contract's roundView: a round, its proposal, and one party's part in it, read in one call."""

    round_id: int
    current_round: int
    round: RoundInfo
    proposal: ProposalInfo
    can_propose: bool
    aggregator_key: bytes
    reward_pool: int
    update: UpdateInfo
    client: ClientInfo
    claimable: int
    owed: int
    priv: PrivateRoundInfo = field(default_factory=lambda: PrivateRoundInfo(0, 0, 0, 0))
    join: JoinInfo = field(default_factory=lambda: JoinInfo(ZERO32, ZERO32, ZERO32))


@dataclass(frozen=True)
class PrivateRoundInfo:
    """A private round's schedule and counts (zeros in robust mode)."""

    join_deadline: int
    reveal_deadline: int
    joined: int
    revealed: int


@dataclass(frozen=True)
class JoinInfo:
    """A participant's join of a private round (zeros: not joined)."""

    round_key: bytes
    dealing: bytes
    reveal: bytes

    @property
    def joined(self) -> bool:
        return self.round_key != ZERO32

    @property
    def revealed(self) -> bool:
        return self.reveal != ZERO32


def _private_info(v: Any) -> PrivateRoundInfo:
    return PrivateRoundInfo(int(v.joinDeadline), int(v.revealDeadline), int(v.joined), int(v.revealed))


def _join_info(v: Any) -> JoinInfo:
    return JoinInfo(bytes(v.roundKey), bytes(v.dealing), bytes(v.reveal))


def _converter(t: Any) -> Callable[[Any], Any]:
    """From eth_abi's value of ABI type `t` to what Ape would return: structs as attribute records,
    addresses checksummed; arrays of either element by element."""
    from types import SimpleNamespace

    from eth_utils import to_checksum_address

    typ = str(t.type)
    if typ.startswith("tuple"):
        names = [c.name for c in t.components]
        parts = [_converter(c) for c in t.components]

        def one(v: Any) -> Any:
            return SimpleNamespace(**{n: f(x) for n, f, x in zip(names, parts, v)})
    elif typ.startswith("address"):
        one = to_checksum_address
    else:
        return lambda v: list(v) if isinstance(v, tuple) else v
    if typ.endswith("]"):
        return lambda v: [one(x) for x in v]
    return one


_DECODERS: dict[int, Callable[[bytes], Any]] = {}


def _decoder(abi: Any) -> Callable[[bytes], Any]:
    """A view's return data decoder (cached per ABI): one output comes back bare, several as a list."""
    key = id(abi)
    if key not in _DECODERS:
        from eth_abi import decode

        types = [o.canonical_type for o in abi.outputs]
        convs = [_converter(o) for o in abi.outputs]

        def run(raw: bytes) -> Any:
            values = [f(v) for f, v in zip(convs, decode(types, raw))]
            return values[0] if len(values) == 1 else (values or None)
        _DECODERS[key] = run
    return _DECODERS[key]


def _view_error(action: str, exc: "RpcError", contract_type: Any) -> "ChainError":
    """A reverted view, decoded by name from the contract's ABI when the node returned the revert data."""
    err = exc.error if isinstance(exc.error, dict) else {}
    data = err.get("data")
    if isinstance(data, dict):  # some nodes nest it
        data = data.get("data")
    if isinstance(data, str) and re.fullmatch(r"0x(?:[0-9a-fA-F]{2})*", data):
        decoded = _decode_with_abi(action, bytes.fromhex(data[2:]), contract_type)
        if decoded is not None:
            return decoded
    return ChainError(action, "Revert", {}, detail=str(err.get("message") or exc))


class RpcError(RuntimeError):
    """The node answered a JSON-RPC request with an error (not a connection problem)."""

    def __init__(self, method: str, error: Any):
        self.error = error
        super().__init__(f"{method}: {error.get('message') if isinstance(error, dict) else error}")


class _LocalNode:
    """JSON-RPC over one kept-alive HTTP connection to a node on this machine.

    requests (under web3) re-reads the proxy settings from the environment on every call, about
    0.6 ms of Anvil's 1 ms round trip; a node on localhost needs no proxy. Nodes elsewhere keep
    web3's provider (proxies, TLS, its retry rules). Connection errors are OSErrors, which the
    parties treat as transient; only requests that cannot have taken effect are sent twice.
    """

    _RETRYABLE = ("eth_call", "eth_estimateGas", "eth_getTransactionCount", "eth_getTransactionReceipt",
                  "eth_blockNumber", "eth_getBlockByNumber", "eth_getLogs", "eth_chainId", "eth_getCode")

    def __init__(self, host: str, port: int, path: str):
        import http.client

        import threading

        self.conn = http.client.HTTPConnection(host, port, timeout=120)
        self.path = path or "/"
        self.next_id = 0
        self.lock = threading.Lock()  # one request at a time on the connection

    def request(self, method: str, params: list[Any]) -> dict[str, Any]:
        with self.lock:
            return self._request(method, params)

    def _request(self, method: str, params: list[Any]) -> dict[str, Any]:
        import http.client

        self.next_id += 1
        body = json.dumps({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        for attempt in (0, 1):
            try:
                self.conn.request("POST", self.path, body, {"Content-Type": "application/json"})
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.status != 200:
                    raise ConnectionError(f"the node answered HTTP {resp.status} to {method}")
                return json.loads(data)
            except (http.client.HTTPException, OSError):
                self.conn.close()  # a stale kept-alive connection: the next request opens a new one
                if attempt or method not in self._RETRYABLE:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover


_LOCAL_NODES: dict[str, _LocalNode | None] = {}


def _local_node(w3: Any) -> _LocalNode | None:
    """The fast path to the provider's node when it listens on this machine (HTTP), else None."""
    uri = str(getattr(w3.provider, "endpoint_uri", "") or "")
    if uri not in _LOCAL_NODES:
        from urllib.parse import urlsplit

        u = urlsplit(uri)
        local = u.scheme == "http" and u.hostname in ("127.0.0.1", "localhost", "::1") and u.port
        _LOCAL_NODES[uri] = _LocalNode(u.hostname, u.port, u.path) if local else None
    return _LOCAL_NODES[uri]


def _rpc(w3: Any, method: str, params: list[Any]) -> Any:
    """One JSON-RPC request: straight to a node on this machine, else through web3's provider (under
    its middleware, which adds eth_chainId calls of its own to transactions); the result, or RpcError
    with the node's error."""
    node = _local_node(w3)
    resp = node.request(method, params) if node is not None else w3.provider.make_request(method, params)
    if resp.get("error") is not None:
        raise RpcError(method, resp["error"])
    return resp.get("result")


def _int(v: Any) -> int:
    return int(v, 16) if isinstance(v, str) else int(v)


def head_block() -> int:
    """The chain's head block number: one eth_blockNumber (Ape's chain.blocks.height goes through web3's
    formatting, 3x the node's time on Anvil)."""
    from ape import chain

    if chain.provider.name == "test":
        return int(chain.blocks.height)
    return _int(_rpc(chain.provider.web3, "eth_blockNumber", []))


class Receipt:
    """What a transaction sent by the direct path left on chain; its events are decoded when asked for."""

    def __init__(self, fl: "FLContract", txn_hash: str, block_number: int, gas_used: int, status: int,
                 logs: list[Any]):
        self.fl = fl
        self.txn_hash = txn_hash
        self.block_number = block_number
        self.gas_used = gas_used
        self.status = status
        self._logs = logs
        self._events: list[Any] | None = None

    @property
    def failed(self) -> bool:
        return self.status != 1

    @property
    def events(self) -> list[Any]:
        """The contract's events in this transaction, decoded (each with .event_name and its arguments)."""
        if self._events is None:
            from ape import chain

            from .logs import _plain

            mine = [_plain(log) for log in self._logs if str(log["address"]).lower() == self.fl.address.lower()]
            abis = list(self.fl.contract.contract_type.events)
            self._events = list(chain.provider.network.ecosystem.decode_logs(mine, *abis)) if mine else []
        return self._events

    def topic(self, event: str, index: int) -> bytes | None:
        """Topic `index` (1 = the first indexed argument) of this contract's first `event` log, undecoded."""
        from eth_utils import keccak

        abi = next(e for e in self.fl.contract.contract_type.events if e.name == event)
        want = keccak(text=abi.selector)
        for log in self._logs:
            if str(log["address"]).lower() != self.fl.address.lower():
                continue
            topics = [bytes.fromhex(t[2:]) if isinstance(t, str) else bytes(t) for t in log["topics"]]
            if topics and topics[0] == want and len(topics) > index:
                return topics[index]
        return None


class FLContract:
    """The deployed job. Every transaction goes through :meth:`_send`."""

    def __init__(self, contract: Any, deploy_block: int = 0, meter: GasMeter | None = None):
        self.contract = contract
        self.deploy_block = deploy_block
        self.meter = meter or GasMeter()
        self._params: JobParams | None = None
        self._params_round: int | None = None
        self._committee: Committee | None = None
        self._reader: Any = None
        self._fee: tuple[int, int, float] | None = None
        self._chain_id: int | None = None
        self._block_gas: int | None = None
        self._caller: str | None = None  # the embedded chain's `from` for views
        self.view_calls: dict[str, int] = {}  # eth_call made by _view, by function
        # Blocks a state must be under before a party acts on it (views with confirmed=True read there).
        self.confirmations = 0

    # ------------------------------------------------------------ creation
    @classmethod
    def deploy(cls, deployer: Any, params: JobParams, admin: str, aggregator: str, meter: GasMeter | None = None,
               admin_delay: int = DEFAULT_ADMIN_DELAY, committee: Committee | None = None) -> "FLContract":
        from ape import project
        from ape.exceptions import ContractLogicError

        t0 = time.perf_counter()
        try:
            instance = deployer.deploy(project.FederatedLearning, asdict(params), (committee or Committee()).to_struct(),
                                       admin, aggregator, int(admin_delay))
        except ContractLogicError as exc:
            raise _decode_error("deploy FederatedLearning", exc, project.FederatedLearning.contract_type) from None
        receipt = instance.creation_metadata.receipt
        fl = cls(instance, deploy_block=receipt.block_number, meter=meter)
        fl.meter.add("deploy", receipt.gas_used, time.perf_counter() - t0)
        return fl

    @classmethod
    def at(cls, address: str, deploy_block: int = 0, meter: GasMeter | None = None) -> "FLContract":
        from ape import chain, project

        if not chain.provider.get_code(address):
            raise ChainError("attach", "NoContract", {"address": address}, reverted=False,
                             detail="no contract at this address on the connected network; deploy first or pick the right --network")
        return cls(project.FederatedLearning.at(address), deploy_block=deploy_block, meter=meter)

    @property
    def address(self) -> str:
        return str(self.contract.address)

    # --------------------------------------------------------------- views
    def params(self, fresh: bool = False, round_id: int | None = None) -> JobParams:
        """The job's parameters; cached, since only the aggregator key can change (between rounds):
        `round_id` reads them again once per round (whoever asks), `fresh` every time."""
        if fresh or self._params is None or (round_id is not None and round_id != self._params_round):
            self._params = JobParams.from_struct(self._view("params"))
            self._params_round = round_id
        return self._params

    def _block(self, confirmed: bool) -> int | str:
        """The block a view reads: `confirmations` below the head when confirmed, else the latest."""
        if not confirmed or self.confirmations <= 0:
            return "latest"
        return max(0, head_block() - self.confirmations)

    def _view(self, fn: str, *args: Any, block: int | str = "latest") -> Any:
        """One eth_call, sent as a raw JSON-RPC request and decoded with eth_abi (structs as attribute
        records). Ape's call path adds an eth_getCode and an eth_getBlockByNumber to every view, and
        web3's and Ape's formatting cost about 6x the node's own time on Anvil."""
        from ape import chain

        handler = getattr(self.contract, fn)
        abi = handler.abis[0]
        data = "0x" + bytes(handler.encode_input(*args)).hex()
        self.view_calls[fn] = self.view_calls.get(fn, 0) + 1
        tag = block if isinstance(block, str) else hex(int(block))
        w3 = chain.provider.web3
        if chain.provider.name == "test":  # eth-tester's raw answers are not JSON-RPC's: web3 formats them
            if self._caller is None:  # a funded sender: else web3 lists (and checksums) every test account per call
                from ape import accounts

                self._caller = str(accounts.test_accounts[0].address)
            try:
                raw = w3.eth.call({"from": self._caller, "to": self.address, "data": data}, block)
            except Exception as exc:  # noqa: BLE001 - a revert in py-evm: decoded by name below
                raise _decode_error(f"{fn} (a view)", exc, self.contract.contract_type) from None
        else:
            try:
                raw = _rpc(w3, "eth_call", [{"to": self.address, "data": data}, tag])
            except RpcError as exc:
                raise _view_error(f"{fn} (a view)", exc, self.contract.contract_type) from None
        raw = bytes.fromhex(raw[2:]) if isinstance(raw, str) else bytes(raw or b"")
        if not raw:
            raise ChainError(f"{fn} (a view)", "NoContract", {"address": self.address}, reverted=False,
                             detail="the call returned nothing: no contract at this address on the node")
        return _decoder(abi)(raw)

    def current_round(self, confirmed: bool = False) -> int:
        """The newest round; with confirmed=True as of `confirmations` blocks ago (what a party acts on)."""
        return int(self._view("currentRound", block=self._block(confirmed)))

    def latest_model_hash(self) -> bytes:
        return bytes(self._view("latestModelHash"))

    def round(self, round_id: int, confirmed: bool = False) -> RoundInfo:
        return _round_info(round_id, self._view("getRound", round_id, block=self._block(confirmed)))

    def update(self, round_id: int, client: str) -> UpdateInfo:
        return _update_info(self._view("getUpdate", round_id, client))

    def client(self, address: str) -> ClientInfo:
        return _client_info(self._view("getClient", address))

    def round_view(self, round_id: int, who: str = ZERO_ADDRESS, confirmed: bool = False) -> "RoundView":
        """One view with what a party needs about a round (0: the current one), and `who`'s part in it."""
        v = self._view("roundView", round_id, who, block=self._block(confirmed))
        rid = int(v.roundId)
        return RoundView(
            round_id=rid, current_round=int(v.currentRound), round=_round_info(rid, v.round),
            proposal=_proposal_info(v.proposal), can_propose=bool(v.canPropose),
            aggregator_key=bytes(v.aggregatorKey), reward_pool=int(v.rewardPool), update=_update_info(v.update),
            client=_client_info(v.client), claimable=int(v.claimable), owed=int(v.owed),
            priv=_private_info(v.priv), join=_join_info(v.join))

    def get_join(self, round_id: int, client: str) -> JoinInfo:
        return _join_info(self._view("getJoin", round_id, client))

    def active_clients(self) -> int:
        return int(self._view("activeClients"))

    def eligible_clients(self) -> int:
        """Active clients with at least the minimum stake: those that can submit."""
        return int(self._view("eligibleClients"))

    def allowance(self, client: str) -> int:
        return int(self._view("allowance", client))

    def treasury_owed(self) -> int:
        return int(self._view("treasuryOwed"))

    def total_burned(self) -> int:
        return int(self._view("totalBurned"))

    def can_propose(self, round_id: int, confirmed: bool = False) -> bool:
        return bool(self._view("canPropose", round_id, block=self._block(confirmed)))

    def committee(self) -> Committee:
        """The verifier committee (fixed at deployment, so cached)."""
        if self._committee is None:
            c = self._view("committee")
            self._committee = Committee(tuple(str(v) for v in c.verifiers), tuple(bytes(k) for k in c.keys),
                                        int(c.threshold))
        return self._committee

    def proposal(self, round_id: int) -> ProposalInfo:
        return _proposal_info(self._view("getProposal", round_id))

    def vote_of(self, round_id: int, verifier: str) -> int:
        """0 none, 1 attested, 2 disputed."""
        return int(self._view("voteOf", round_id, verifier))

    def bond_of(self, aggregator: str) -> int:
        return int(self._view("bondOf", aggregator))

    def outcome_digest(self, round_id: int, outcome: Outcome) -> bytes:
        return bytes(self._view("outcomeDigest", round_id, outcome.to_struct()))

    def claimable(self, round_id: int, client: str) -> int:
        return int(self._view("claimable", round_id, client))

    def owed(self, client: str) -> int:
        return int(self._view("owed", client))

    def reward_pool(self) -> int:
        return int(self._view("rewardPool"))

    def has_role(self, role: str, account: str) -> bool:
        role_id = {"aggregator": self.contract.AGGREGATOR_ROLE, "registrar": self.contract.REGISTRAR_ROLE}.get(
            role, self.contract.DEFAULT_ADMIN_ROLE)()
        return bool(self._view("hasRole", role_id, account))

    # ---------------------------------------------------------------- logs
    @property
    def reader(self) -> Any:
        """The paged event reader (ml.logs): explicit ranges, pages shrunk on a provider's refusal."""
        if self._reader is None:
            from .logs import EventReader

            self._reader = EventReader(self.contract)
        return self._reader

    def logs(self, names: str | Sequence[str], start: int, end: int | None = None, **indexed: Any) -> list[Any]:
        """Events `names` in blocks [start, end] (end: the head), filtered on shared indexed arguments."""
        return self.reader.read(names, start, end, **indexed)

    def round_logs(self, names: str | Sequence[str], info: RoundInfo) -> list[Any]:
        """A closed round's events of the block that closed it (its verdicts): one query, whatever its age."""
        if not info.closed_block:
            return []
        return self.logs(names, info.closed_block, info.closed_block, roundId=info.round_id)

    def submissions(self, round_id: int, info: RoundInfo | None = None) -> list[Submission]:
        """UpdateSubmitted events of a round, in the order they were mined (read from its blocks only)."""
        info = info or self.round(round_id)
        if not info.start_block:
            return []
        logs = self.logs("UpdateSubmitted", info.start_block, info.closed_block or None, roundId=round_id)
        return [
            Submission(int(log.roundId), str(log.client), bytes(log.commitment), int(log.samples), str(log.locator),
                       int(log.block_number))
            for log in logs
        ]

    def participants(self, round_id: int, info: RoundInfo | None = None) -> list[Participant]:
        """A private round's participants from its own blocks: joins, submissions and reveals, by address."""
        from .private import Participant

        info = info or self.round(round_id)
        if not info.start_block:
            return []
        logs = self.logs(["ClientJoined", "UpdateSubmitted", "SharesRevealed"], info.start_block,
                         info.closed_block or None, roundId=round_id)
        joined: dict[str, dict[str, Any]] = {}
        for log in logs:
            who = str(log.client)
            if log.event_name == "ClientJoined":
                joined[who] = dict(address=who, round_key=bytes(log.roundKey), dealing_digest=bytes(log.dealing),
                                   dealing_locator=str(log.locator))
            elif who in joined and log.event_name == "UpdateSubmitted":
                joined[who].update(commitment=bytes(log.commitment), samples=int(log.samples),
                                   locator=str(log.locator))
            elif who in joined:
                joined[who].update(reveal_digest=bytes(log.reveal), reveal_locator=str(log.locator))
        return [Participant(**joined[a]) for a in sorted(joined, key=lambda a: int(a, 16))]

    def registered_keys(self, start: int | None = None, end: int | None = None) -> dict[str, bytes]:
        """Each registered client's X25519 key from ClientRegistered events in [start, end] (the chain is
        the PKI: private mode seals shares to these keys)."""
        logs = self.logs("ClientRegistered", self.deploy_block if start is None else start, end)
        return {str(log.client): bytes(log.encryptionKey) for log in logs}

    def proposal_event(self, round_id: int, proposal: ProposalInfo | None = None) -> Any | None:
        """The round's RoundProposed event (its locators), read from the proposal's block only."""
        p = proposal or self.proposal(round_id)
        if not p.proposed_block:
            return None
        logs = self.logs("RoundProposed", p.proposed_block, p.proposed_block, roundId=round_id)
        return logs[-1] if logs else None

    def proposed_outcome(self, round_id: int, proposal: ProposalInfo | None = None) -> Outcome | None:
        """The outcome proposed for a round, as its RoundProposed event carries it (None if never proposed)."""
        ev = self.proposal_event(round_id, proposal)
        if ev is None:
            return None
        return Outcome(bytes(ev.modelHash), tuple(str(a) for a in ev.rejected), tuple(int(x) for x in ev.reasons),
                       tuple(str(a) for a in ev.excluded), bytes(ev.evidenceHash), str(ev.evidenceLocator),
                       str(ev.modelLocator))

    def model_locator(self, round_id: int, proposal: ProposalInfo | None = None) -> str | None:
        """The model locator proposed for a round (None if never proposed)."""
        ev = self.proposal_event(round_id, proposal)
        return str(ev.modelLocator) if ev is not None else None

    def events(self, name: str, **topics: Any) -> list[Any]:
        """Every `name` event since deployment: an audit of the whole history, whose cost grows with the
        job's age. Parties never call it; they read a round's blocks or follow a cursor."""
        return self.logs(name, self.deploy_block, None, **topics)

    # -------------------------------------------------------- transactions
    def _send(self, fn: str, sender: Any, *args: Any, value: int = 0) -> Any:
        """Sends one transaction and returns its receipt; a revert comes back as ChainError with its name.

        The direct path (:meth:`_send_direct`) builds, signs (with the account, through Ape) and sends
        the transaction in four node calls. Ape's own path makes about twelve (two getCode, fee
        history, balance, automine, and a trace_transaction after every transaction to print
        console.log lines), about 4x the node's own time; it is kept for what the direct path cannot
        judge: a transaction whose gas estimate fails is sent Ape's way, which decodes the revert.
        """
        from ape.exceptions import ApeException

        action = f"{fn} by {sender.address}"
        t0 = time.perf_counter()
        try:
            receipt = self._send_direct(action, fn, sender, args, value)
        except ApeException as exc:
            raise _decode_error(action, exc, self.contract.contract_type) from None
        if receipt is None:
            return self._send_with_ape(fn, sender, *args, value=value)
        if receipt.failed:
            raise self._why_reverted(action, getattr(self.contract, fn), args, sender, value, receipt.txn_hash)
        self.meter.add(fn, receipt.gas_used, time.perf_counter() - t0)
        return receipt

    def _send_direct(self, action: str, fn: str, sender: Any, args: tuple, value: int) -> "Receipt | None":
        """estimateGas, nonce, sendRawTransaction, receipt (fees cached a few seconds on a dev chain).

        None when the gas estimate fails (a revert): the caller sends it Ape's way for the decoded error.
        """
        from ape import chain

        provider = chain.provider
        w3 = provider.web3
        method = getattr(self.contract, fn)
        data = method.encode_input(*args)
        address = str(sender.address)
        call = {"from": address, "to": self.address, "data": "0x" + bytes(data).hex(), "value": hex(int(value))}
        # The embedded chain (py-evm) runs a transaction several times to estimate its gas: there, as Ape
        # does on local networks, the limit is the block's and a revert shows when the transaction runs.
        embedded = provider.name == "test"
        if embedded:
            if self._block_gas is None:
                self._block_gas = int(w3.eth.get_block("latest")["gasLimit"])
            gas_limit = self._block_gas
        else:
            try:
                gas = _int(_rpc(w3, "eth_estimateGas", [call]))
            except RpcError:  # the node's answer: a revert (any client's shape)
                return None
            gas_limit = gas + gas // 5 + 10_000
        dev = is_dev_chain()
        max_fee, tip = self._fees(w3, dev)
        if self._chain_id is None:
            self._chain_id = int(w3.eth.chain_id)
        nonce = int(w3.eth.get_transaction_count(address, "pending")) if embedded else \
            _int(_rpc(w3, "eth_getTransactionCount", [address, "pending"]))
        raw = self._sign(action, sender, address, nonce, gas_limit, max_fee, tip, data, value)
        if embedded:  # web3's own formatting of eth-tester's answers (its raw answers are not JSON-RPC's)
            try:
                txn_hash = "0x" + bytes(w3.eth.send_raw_transaction(raw)).hex()
            except Exception:  # noqa: BLE001 - py-evm refuses a reverting transaction: Ape's path names it
                return None
            return self._receipt(action, txn_hash, dev, embedded=True)
        try:
            txn_hash = _rpc(w3, "eth_sendRawTransaction", [raw])
        except RpcError as exc:  # the node refused it (funds, fee, nonce)
            self._fee = None
            raise ChainError(action, "SendRefused", {}, reverted=False, detail=str(exc)) from None
        return self._receipt(action, str(txn_hash), dev)

    def _sign(self, action: str, sender: Any, address: str, nonce: int, gas_limit: int, max_fee: int, tip: int,
              data: bytes, value: int) -> str:
        """The signed raw transaction, hex (the account signs through Ape: keystores ask for their passphrase)."""
        from ape import chain

        txn = chain.provider.network.ecosystem.create_transaction(
            chain_id=self._chain_id, nonce=nonce, gas_limit=gas_limit, max_fee=max_fee,
            max_priority_fee=tip, receiver=self.address, data=data, value=int(value), type=2, sender=address)
        signed = sender.sign_transaction(txn)
        if signed is None:
            raise ChainError(action, "NotSigned", {}, reverted=False,
                             detail="the account declined to sign the transaction")
        return "0x" + bytes(signed.serialize_transaction()).hex()

    def _fees(self, w3: Any, dev: bool) -> tuple[int, int]:
        """(maxFeePerGas, maxPriorityFeePerGas): twice the base fee plus the tip, as Ape does; cached 10 s on
        a dev chain, read for every transaction on a live network."""
        now = time.monotonic()
        if self._fee is not None and dev and now - self._fee[2] < 10.0:
            return self._fee[0], self._fee[1]
        base = int(w3.eth.get_block("latest").get("baseFeePerGas") or 0)
        try:
            tip = int(w3.eth.max_priority_fee)
        except Exception:  # noqa: BLE001 - a node without eth_maxPriorityFeePerGas
            tip = 10**9
        self._fee = (2 * base + tip, tip, now)
        return self._fee[0], self._fee[1]

    def _receipt(self, action: str, txn_hash: str, dev: bool, embedded: bool = False) -> "Receipt":
        """Polls for the receipt: every few ms on a dev chain (which is nudged to mine after 2 s), every
        second on a live network, for as long as wait_until_mined would."""
        from ape import chain

        w3 = chain.provider.web3
        wait = DEV_CHAIN_MINING_WAIT if dev else LIVE_NETWORK_MINING_WAIT
        start = time.monotonic()
        delay, nudged = 0.002, start
        while True:
            if embedded:
                from web3.exceptions import TransactionNotFound

                try:
                    r = w3.eth.get_transaction_receipt(txn_hash)
                except TransactionNotFound:
                    r = None
            else:
                r = _rpc(w3, "eth_getTransactionReceipt", [txn_hash])
            if r is not None and r.get("blockNumber") is not None:
                return Receipt(self, txn_hash, _int(r["blockNumber"]), _int(r["gasUsed"]), _int(r["status"]),
                               list(r.get("logs") or []))
            now = time.monotonic()
            if now - start > wait:
                raise _not_mined(action, txn_hash, f"{wait:.0f} s", dev)
            if dev and now - nudged > 2.0:
                _mine_one_block(chain.provider)
                nudged = now
            time.sleep(delay)
            delay = min(delay * 2, 0.1 if dev else 1.0)

    def _send_with_ape(self, fn: str, sender: Any, *args: Any, value: int = 0) -> Any:
        from ape.exceptions import ApeException, TransactionNotFoundError

        method = getattr(self.contract, fn)
        action = f"{fn} by {sender.address}"
        t0 = time.perf_counter()
        try:
            # required_confirmations=0: Ape returns once mined and draws no "Confirmations (0/2)" bar; the
            # parties wait for confirmations themselves, where it matters (FLContract.confirmations).
            kw = dict(sender=sender, required_confirmations=0, **({"value": value} if value else {}))
            receipt = method(*args, **kw)
            if not _mined(receipt):  # a node that does not mine on its own (Anvil --no-mining, interval mining)
                receipt = wait_until_mined(action, receipt.txn_hash)
        except TransactionNotFoundError as exc:  # sent, but not mined within the network's acceptance timeout
            receipt = wait_until_mined(action, _tx_hash(exc, action))
        except ApeException as exc:
            raise _decode_error(action, exc, self.contract.contract_type) from None
        if receipt.failed:
            raise self._why_reverted(action, method, args, sender, value, receipt.txn_hash)
        self.meter.add(fn, receipt.gas_used, time.perf_counter() - t0)
        return receipt

    def _why_reverted(self, action: str, method: Any, args: tuple, sender: Any, value: int, txn_hash: Any) -> ChainError:
        """A transaction that reverted only once mined: replay it as an eth_call and decode its custom error.

        web3 keeps the raw revert data of a call; Ape's message may render it as text, so it is not parsed.
        """
        from ape import chain

        call = {"from": sender.address, "to": self.address, "data": method.encode_input(*args), "value": value}
        try:
            chain.provider.web3.eth.call(call)
        except Exception as exc:  # noqa: BLE001 - any node error says why; a custom error is decoded by name
            data = getattr(exc, "data", None)
            if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
                try:
                    error = chain.provider.network.ecosystem.decode_custom_error(bytes.fromhex(data[2:]), self.address)
                except Exception:  # noqa: BLE001 - not one of the contract's errors
                    error = None
                if error is not None:
                    return _decode_error(action, error)
                decoded = _decode_with_abi(action, bytes.fromhex(data[2:]), self.contract.contract_type)
                if decoded is not None:
                    return decoded
            # py-evm (the embedded chain) says "execution reverted: b'...'" with the data as a bytes literal.
            for arg in (*getattr(exc, "args", ()), str(exc)):
                raw = arg if isinstance(arg, (bytes, bytearray)) else None
                if raw is None and isinstance(arg, str):
                    m = re.search(r"(b'.*'|b\".*\")\s*$", arg, re.S)
                    raw = _revert_data(Exception(m.group(1))) if m else None
                decoded = _decode_with_abi(action, bytes(raw), self.contract.contract_type) if raw else None
                if decoded is not None:
                    return decoded
            return ChainError(action, "Revert", {}, detail=f"reverted once mined ({exc})")
        return ChainError(action, "Revert", {"tx": str(txn_hash)},
                          detail="reverted once mined; replayed now it passes (the state changed in between)")

    def register(self, sender: Any, encryption_key: bytes, stake: int) -> Any:
        return self._send("register", sender, to_bytes32(encryption_key), value=stake)

    def top_up(self, sender: Any, amount: int) -> Any:
        return self._send("topUp", sender, value=amount)

    def request_exit(self, sender: Any) -> Any:
        return self._send("requestExit", sender)

    def withdraw_stake(self, sender: Any) -> Any:
        return self._send("withdrawStake", sender)

    def start_round(self, sender: Any) -> int:
        """Starts a round; its id comes from the receipt's RoundStarted log (no view after it)."""
        receipt = self._send("startRound", sender)
        started = receipt.topic("RoundStarted", 1) if isinstance(receipt, Receipt) else None
        return int.from_bytes(started, "big") if started is not None else self.current_round()

    def submit(self, sender: Any, round_id: int, commitment: bytes, samples: int, locator: str) -> Any:
        return self._send("submitUpdate", sender, round_id, to_bytes32(commitment), int(samples), locator)

    def join(self, sender: Any, round_id: int, round_key: bytes, dealing: bytes, locator: str) -> Any:
        """Join a private round: the round's X25519 public key and the digest of the public dealing."""
        return self._send("joinRound", sender, round_id, to_bytes32(round_key), to_bytes32(dealing), locator)

    def reveal(self, sender: Any, round_id: int, reveal: bytes, locator: str) -> Any:
        """A survivor's reveal of a private round: keccak of the reveal blob and where it is."""
        return self._send("revealShares", sender, round_id, to_bytes32(reveal), locator)

    def propose(self, sender: Any, round_id: int, outcome: Outcome) -> Any:
        return self._send("proposeRound", sender, round_id, outcome.to_struct())

    def attest(self, sender: Any, round_id: int, outcome: Outcome) -> Any:
        """Attest the outcome the verifier computed (the contract checks its digest; the m-th applies it)."""
        return self._send("attest", sender, round_id, outcome.to_struct())

    def dispute(self, sender: Any, round_id: int, digest: bytes) -> Any:
        return self._send("dispute", sender, round_id, to_bytes32(digest))

    def expire(self, sender: Any, round_id: int) -> Any:
        return self._send("expireProposal", sender, round_id)

    def post_bond(self, sender: Any, amount: int) -> Any:
        return self._send("postBond", sender, value=amount)

    def withdraw_bond(self, sender: Any, amount: int) -> Any:
        return self._send("withdrawBond", sender, int(amount))

    def cancel(self, sender: Any, round_id: int) -> Any:
        return self._send("cancelRound", sender, round_id)

    def admit(self, sender: Any, client: str, samples: int) -> Any:
        return self._send("admit", sender, client, int(samples))

    def withdraw_treasury(self, sender: Any) -> int:
        receipt = self._send("withdrawTreasury", sender)
        logs = [log for log in receipt.events if log.event_name == "TreasuryWithdrawn"]
        return int(logs[0].amount) if logs else 0

    def fund(self, sender: Any, amount: int) -> Any:
        return self._send("fundRewards", sender, value=amount)

    def claim(self, sender: Any, round_id: int) -> int:
        receipt = self._send("claimReward", sender, round_id)
        logs = [log for log in receipt.events if log.event_name == "RewardClaimed"]
        return int(logs[0].amount) if logs else 0

    def claim_many(self, sender: Any, round_ids: Sequence[int]) -> dict[int, int]:
        """Claims several rounds in one transaction (claimRewards); wei credited per round."""
        receipt = self._send("claimRewards", sender, [int(r) for r in round_ids])
        return {int(log.roundId): int(log.amount) for log in receipt.events if log.event_name == "RewardClaimed"}

    def withdraw_rewards(self, sender: Any) -> int:
        receipt = self._send("withdrawRewards", sender)
        logs = [log for log in receipt.events if log.event_name == "RewardsWithdrawn"]
        return int(logs[0].amount) if logs else 0


# ------------------------------------------------------------ deployments file
@dataclass
class Deployment:
    """Where a job lives; written by deploy, read by every other command."""

    network: str
    chain_id: int
    address: str
    block: int
    params: dict[str, Any]
    model_spec: dict[str, Any]
    aggregator: str
    admin: str
    extra: dict[str, Any] = field(default_factory=dict)


def save_deployment(path: Path, dep: Deployment) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {}
    if path.exists():
        data = json.loads(path.read_text())
    data[dep.network] = asdict(dep)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    tmp.replace(path)


def load_deployment(path: Path, network: str) -> Deployment | None:
    path = Path(path)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    if network not in data:
        return None
    return Deployment(**data[network])


def wait_until(predicate: Callable[[], bool], timeout: float, poll: float = 0.5, max_poll: float = 5.0,
               sleep: Callable[[float], Any] = time.sleep) -> bool:
    """Polls with exponential backoff until predicate() or the timeout; returns the last result.

    `timeout` may be ``math.inf``; `sleep` may be an interruptible wait such as
    ``threading.Event().wait`` (long-running parties stop on a signal that way).
    """
    deadline = time.monotonic() + timeout
    delay = poll
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, max_poll)


def network_name() -> str:
    from ape import networks

    p = networks.provider
    return f"{p.network.ecosystem.name}:{p.network.name}:{p.name}"


def is_dev_chain() -> bool:
    """Local chains on which the federation may move time forward itself."""
    from ape import networks

    return networks.provider.network.name == "local"


def advance_time_past(timestamp: int) -> None:
    """On a local dev chain, mine a block just after `timestamp`."""
    from ape import chain

    if chain.pending_timestamp <= timestamp:
        chain.pending_timestamp = timestamp + 1
    chain.mine()

