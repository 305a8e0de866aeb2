"""Secure aggregation for private mode: fixed point, pairwise masks, Shamir recovery.

In private mode the masked updates are public, so that anyone can sum them and
re-compute the global model bit for bit; nobody (aggregator, verifiers, fewer
than t colluding clients) may learn one update. This module is the chain-free
cryptographic core: pure functions over arrays, keys and records. The chain is
the PKI and the referee (who joined, who submitted); the parties call this.

Scheme (version 1), for one round of a job with :class:`SecAggParams`:

* **Fixed point.** ``q_i = rint(clip(w_i - base, -c, c) * n_i * 2**s) mod 2**k``
  (float64, numpy ``rint`` = round half to even, tensors flattened in order, C
  order). The sum of the survivors' ``q_i`` is read as a signed k-bit integer,
  times ``2**-s``, divided by ``N = sum n_i`` (float64), added to the float64 base
  and rounded once to float32: FedAvg in fixed point, the same bits for everyone.
  :meth:`SecAggParams.max_total_samples` is the largest N for which that sum
  cannot wrap (it counts the rounding: each participant may add 1/2).
* **Round secrets.** Each participant draws a fresh X25519 key pair per round
  (its public key goes on chain when it joins) and, with ``self_mask`` (the
  default), a 32-byte self-mask seed committed as ``keccak(seed)``.
* **Pairwise masks.** For a != b: ``seed_ab = HKDF-SHA256(X25519(sk_a, pk_b),
  salt = pk_lo || pk_hi, info = PAIR_INFO || chain || contract || round || lo || hi)``
  (lo/hi: the two addresses in ascending order, as uint160); the mask is the
  AES-256-CTR keystream of ``seed_ab`` (zero counter block: each key is used for
  one stream) read as little-endian k-bit words, uniform mod 2**k. The lower
  address adds it, the higher subtracts it, so a pair's masks cancel in the sum.
* **Self mask.** ``AES-256-CTR(HKDF(seed, info = SELF_INFO || chain || contract
  || round || address))``, added by the owner. It protects an update whose owner
  the chain counts as dropped although its masked vector got out (stored, then
  the submit transaction came too late): its pairwise masks are removed for
  everyone, the self mask is not (Bonawitz et al. 2017, "double masking").
* **Shares.** The 32-byte round private key (and the seed) are split with
  pycryptodome's Shamir over GF(2**128), two 16-byte halves with the same indices.
  Each holder's shares travel in one blob sealed with :func:`ml.sealing.seal` to
  the holder's *registered* key, in the dealer's :class:`ml.sealing.SealContext`
  (chain, contract, round, dealer); the authenticated payload names the holder
  and its index. Each share is committed publicly as ``keccak(share || salt)``,
  the 32-byte random salt travelling inside the blob. The whole
  :class:`Dealing` is public; its :meth:`Dealing.digest` goes on chain at join,
  which binds the dealer to its encrypted shares (sealing does not authenticate
  a sender, the join transaction does).
* **Recovery.** For each dropped participant the survivors reveal their key
  shares (checked by anyone with :func:`check_revealed`); t of them rebuild its
  private key, accepted only if it gives the published public key
  (:func:`reconstruct_secret`). Each survivor reveals its own self-mask seed
  (checked against its commitment), or t holders reveal their seed shares of
  it. A holder never reveals both shares of one dealer: the chain's final split
  into survivors and dropped decides which (:func:`shares_to_reveal`).
* **Unmasking** (:func:`unmask_sum`) needs public data only: the survivors'
  masked vectors and public keys, the recovered keys of the dropped, the
  survivors' seeds. It adds each dropped participant's signed masks with the
  survivors (the opposite of what the survivors added), subtracts the self
  masks; masks between survivors cancel by themselves.

Every failure is a one-line :class:`SecAggError` (a ``ValueError``).
"""

from __future__ import annotations

import hmac
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Final

import numpy as np
from Crypto.Protocol.SecretSharing import Shamir
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_utils import keccak

from ml.sealing import (
    KEY_SIZE,
    SealContext,
    SealError,
    _address,
    _is_canonical_point,
    _key_bytes,
    generate_keypair,
    open_sealed,
    open_with_content_key,
    public_key_of,
    recipients_of,
    require_recipients,
    seal,
    sealed_overhead,
)

__all__ = [
    "PAIR_INFO", "SELF_INFO", "RING_BITS", "KIND_KEY", "KIND_SEED", "SALT_SIZE",
    "SecAggError", "SecAggParams", "RoundContext", "RoundSecrets", "Holder", "Share", "Dealing",
    "max_total_samples", "quantize", "dequantize", "aggregate", "ring_sum",
    "new_round_secrets", "seed_commitment", "check_public_key", "check_participants",
    "pair_seed", "mask_for", "self_mask", "mask_update", "unmask_sum",
    "share_round_secret", "open_share", "open_disclosed_share", "check_dealing", "check_revealed",
    "shares_to_reveal", "reconstruct_secret", "reconstruct_seed",
    "encode_vector", "decode_vector", "vector_blob_size", "encrypted_share_size", "dealing_size",
]

PAIR_INFO: Final = b"chainfl-secagg-v1/pair-mask"
SELF_INFO: Final = b"chainfl-secagg-v1/self-mask"
RING_BITS: Final = (16, 32, 64)
"""Supported moduli 2**k: whole little-endian words on the wire and in the keystream."""
KIND_KEY: Final = 1
"""A share of the round's X25519 private key (revealed when its dealer dropped)."""
KIND_SEED: Final = 2
"""A share of the self-mask seed (revealed when its dealer survived but did not reveal the seed)."""
SALT_SIZE: Final = 32
VECTOR_MAGIC: Final = b"CFSM"
SHARE_MAGIC: Final = b"CFSS"
DEALING_MAGIC: Final = b"CFSD"
VERSION: Final = 1
VECTOR_HEADER_SIZE: Final = len(VECTOR_MAGIC) + 1 + 1 + 8
"""14: magic, version, ring bits, length (uint64 big-endian)."""
_MAX_INDEX: Final = 2**16 - 1
_EXACT: Final = 2**53
_ZERO_BLOCK: Final = bytes(16)


class SecAggError(ValueError):
    """Bad parameters, inputs or cryptographic material; the message is one line."""


def _fail(message: str) -> SecAggError:
    return SecAggError(" ".join(message.split()))


# --------------------------------------------------------------------------- parameters


def _int(value: object, what: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise _fail(f"{what} must be an integer, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise _fail(f"{what} must be {bound}, got {value}")
    return value


@dataclass(frozen=True)
class SecAggParams:
    """A job's private-mode parameters (on chain with the job).

    ``clip`` bounds every coordinate of a participant's change from the base
    model; ``scale_bits`` is the fixed-point precision (``2**-s`` per sample);
    ``ring_bits`` the modulus ``2**k`` of the masked vectors (8 or 4 bytes per
    parameter for 64 or 32); ``threshold`` t the number of shares that recover a
    dropped participant (fewer than t colluding clients learn nothing, at least t
    survivors must reveal); ``self_mask`` enables double masking (keep it on:
    see the module docstring).
    """

    clip: float
    scale_bits: int
    ring_bits: int = 64
    threshold: int = 2
    self_mask: bool = True

    def __post_init__(self) -> None:
        clip = self.clip
        if isinstance(clip, bool) or not isinstance(clip, (int, float, np.floating, np.integer)):
            raise _fail(f"clip must be a positive finite number, got {clip!r}")
        clip = float(clip)
        if not (math.isfinite(clip) and clip > 0):
            raise _fail(f"clip must be a positive finite number, got {clip!r}")
        object.__setattr__(self, "clip", clip)
        object.__setattr__(self, "scale_bits", _int(self.scale_bits, "scale_bits", 0, 62))
        if isinstance(self.ring_bits, bool) or self.ring_bits not in RING_BITS:
            raise _fail(f"ring_bits must be one of {RING_BITS}, got {self.ring_bits!r}")
        object.__setattr__(self, "ring_bits", int(self.ring_bits))
        if self.threshold in (0, 1) and not isinstance(self.threshold, bool):
            raise _fail(f"threshold must be >= 2, got {self.threshold}: with t = 1 any single holder recovers every key")
        object.__setattr__(self, "threshold", _int(self.threshold, "threshold", 2, _MAX_INDEX))
        if not isinstance(self.self_mask, bool):
            raise _fail(f"self_mask must be True or False, got {self.self_mask!r}")
        if self.max_total_samples() < 1:
            raise _fail(
                f"ring overflow: clip * 2**scale_bits = {clip * 2.0**self.scale_bits:.6g} leaves no room for one "
                f"sample in a {self.ring_bits}-bit ring; lower scale_bits or clip, or use ring_bits=64"
            )

    @property
    def modulus(self) -> int:
        return 1 << self.ring_bits

    @property
    def word_bytes(self) -> int:
        """Bytes per coordinate of a masked vector (and of the mask keystream)."""
        return self.ring_bits // 8

    def max_total_samples(self) -> int:
        """The largest total sample count N whose sum cannot wrap around the ring.

        Each participant's coordinate is at most ``rint(fl(c * n_i * 2**s))``, which
        is ``<= n_i * c * 2**s * (1 + 2**-53) + 1/2``; with n_i >= 1 the sum is at most
        ``N * (c * 2**s * (1 + 2**-53) + 1/2)``, which must stay below ``2**(k-1)``
        to be read back as a signed integer. Exact rational arithmetic.
        """
        per_sample = Fraction(self.clip) * 2**self.scale_bits * (1 + Fraction(1, _EXACT)) + Fraction(1, 2)
        return math.ceil(Fraction(2 ** (self.ring_bits - 1)) / per_sample) - 1

    def check_total_samples(self, n_total: int) -> int:
        """``n_total`` if it fits the ring; a :class:`SecAggError` that says the limit otherwise."""
        n = _int(n_total, "the total sample count", 1)
        limit = self.max_total_samples()
        if n > limit:
            raise _fail(
                f"ring overflow: {n} samples exceed the {limit} that a {self.ring_bits}-bit ring holds with "
                f"clip={self.clip:g} and scale_bits={self.scale_bits}; cap the job's samples, lower scale_bits, "
                "or use ring_bits=64"
            )
        return n


def job_fields(params: SecAggParams, join_period: int, reveal_period: int) -> dict[str, int]:
    """The contract's private-mode fields of a job with these parameters and windows (seconds)."""
    return dict(privacy=1, secClip=int(round(params.clip * 1e6)), secScaleBits=params.scale_bits,
                secRingBits=params.ring_bits, secThreshold=params.threshold, joinPeriod=join_period,
                revealPeriod=reveal_period)


def max_total_samples(params: SecAggParams) -> int:
    """The largest total of samples a job with ``params`` can aggregate (see :meth:`SecAggParams.max_total_samples`)."""
    return params.max_total_samples()


# --------------------------------------------------------------------------- context, keys, addresses


@dataclass(frozen=True)
class RoundContext:
    """Where masks and shares belong: (chain id, contract, round).

    Validated and checksummed through :class:`ml.sealing.SealContext`, which
    :meth:`seal_context` builds for one client (the dealer of a share).
    """

    chain_id: int
    contract: str
    round_id: int

    def __post_init__(self) -> None:
        probe = _seal_context(self.chain_id, self.contract, self.round_id, self.contract)
        object.__setattr__(self, "contract", probe.contract)

    def seal_context(self, client: str) -> SealContext:
        return _seal_context(self.chain_id, self.contract, self.round_id, client)

    def binding(self) -> bytes:
        """``chain_id (32 BE) | contract (20) | round (32 BE)``: fixed width, one encoding per round."""
        return self.chain_id.to_bytes(32, "big") + bytes.fromhex(self.contract[2:]) + self.round_id.to_bytes(32, "big")


def _seal_context(chain_id: int, contract: str, round_id: int, client: str) -> SealContext:
    try:
        return SealContext(chain_id, contract, round_id, client)
    except SealError as exc:
        raise _fail(str(exc)) from None


def _addr(value: str, what: str = "address") -> str:
    try:
        return _address(value, what)
    except SealError as exc:
        raise _fail(str(exc)) from None


def _addr_bytes(address: str) -> bytes:
    """20 bytes; comparing them is comparing the addresses as uint160 (as Solidity does)."""
    return bytes.fromhex(address[2:])


def _bytes32(value: bytes | str, what: str) -> bytes:
    try:
        return _key_bytes(value, what)
    except SealError as exc:
        raise _fail(str(exc)) from None


def check_public_key(public_key: bytes | str, what: str = "public key") -> bytes:
    """The 32 raw bytes of a usable X25519 public key: canonical and not of low order.

    A low-order key makes every agreement with it all-zero (X25519 refuses it), so
    a participant that publishes one would block everyone's masks: anyone can
    check this at join time and exclude it before masking.
    """
    raw = _bytes32(public_key, what)
    if not _is_canonical_point(raw):
        raise _fail(f"{what} 0x{raw.hex()} is not a canonical X25519 public key")
    try:  # any scalar kills the 8-torsion: low order <=> the agreement is all zero
        X25519PrivateKey.from_private_bytes(b"\x01" * KEY_SIZE).exchange(X25519PublicKey.from_public_bytes(raw))
    except ValueError:
        raise _fail(f"{what} 0x{raw.hex()} is a low-order X25519 point") from None
    return raw


def check_participants(public_keys: Mapping[str, bytes | str]) -> dict[str, bytes]:
    """Checksummed address -> raw key for a round's participants; every key usable and distinct.

    A participant that copies another's key cannot compute its own masks nor
    share a matching secret; refusing duplicates at join time keeps that out.
    """
    out: dict[str, bytes] = {}
    seen: dict[bytes, str] = {}
    for address, key in public_keys.items():
        addr = _addr(address, "participant address")
        if addr in out:
            raise _fail(f"participant {addr} is listed twice")
        raw = check_public_key(key, f"round public key of {addr}")
        if raw in seen:
            raise _fail(f"{addr} publishes the same round public key as {seen[raw]}")
        out[addr], seen[raw] = raw, addr
    return out


@dataclass(frozen=True)
class RoundSecrets:
    """One participant's secrets for one round; only ``public_key`` (and ``keccak(self_seed)``) is published."""

    private_key: bytes = field(repr=False)
    public_key: bytes
    self_seed: bytes | None = field(default=None, repr=False)

    @property
    def seed_commitment(self) -> bytes | None:
        return None if self.self_seed is None else seed_commitment(self.self_seed)


def new_round_secrets(params: SecAggParams) -> RoundSecrets:
    """A fresh X25519 key pair (and self-mask seed, if the job uses one) for one round."""
    pair = generate_keypair()
    return RoundSecrets(pair.private, pair.public, os.urandom(KEY_SIZE) if params.self_mask else None)


def seed_commitment(seed: bytes) -> bytes:
    """``keccak(seed)``: hides a 256-bit random seed, binds the owner to it (published at join)."""
    return keccak(_bytes32(seed, "self-mask seed"))


# --------------------------------------------------------------------------- fixed point


def _float32_list(arrays: Sequence[np.ndarray], what: str) -> list[np.ndarray]:
    if isinstance(arrays, np.ndarray) or not isinstance(arrays, Sequence) or not arrays:
        raise _fail(f"{what} must be a non-empty list of float32 arrays")
    out = []
    for i, a in enumerate(arrays):
        a = np.asarray(a)
        if a.dtype != np.float32:
            raise _fail(f"{what} tensor {i} is {a.dtype}, not float32 (the model's dtype)")
        if not np.isfinite(a).all():
            raise _fail(f"{what} tensor {i} holds non-finite values")
        out.append(a)
    return out


def _deltas(weights: Sequence[np.ndarray], base: Sequence[np.ndarray]) -> np.ndarray:
    ws, bs = _float32_list(weights, "weights"), _float32_list(base, "base")
    if len(ws) != len(bs):
        raise _fail(f"weights have {len(ws)} tensors, the base model {len(bs)}")
    for i, (w, b) in enumerate(zip(ws, bs)):
        if w.shape != b.shape:
            raise _fail(f"tensor {i} has shape {w.shape}, the base model {b.shape}")
    return np.concatenate([w.astype(np.float64).ravel() - b.astype(np.float64).ravel() for w, b in zip(ws, bs)])


def quantize(weights: Sequence[np.ndarray], base: Sequence[np.ndarray], n_samples: int, params: SecAggParams) -> np.ndarray:
    """The participant's sample-weighted update in the ring, flat uint64.

    ``rint(clip(w - base, -c, c) * (n * 2**s)) mod 2**k`` in float64, one IEEE
    product and numpy's round-half-to-even, so anyone gets the same integers.
    """
    n = params.check_total_samples(n_samples)
    multiplier = n << params.scale_bits
    if multiplier >= _EXACT:
        raise _fail(f"n_samples * 2**scale_bits = {multiplier} is not exact in float64; lower scale_bits")
    x = _deltas(weights, base)
    np.clip(x, -params.clip, params.clip, out=x)
    x *= float(multiplier)
    q = np.rint(x).astype(np.int64).view(np.uint64)
    if params.ring_bits < 64:
        q &= np.uint64(params.modulus - 1)
    return q


def _vector(vector: np.ndarray, params: SecAggParams, what: str) -> np.ndarray:
    v = np.asarray(vector)
    if v.dtype != np.uint64 or v.ndim != 1:
        raise _fail(f"{what} must be a flat uint64 array, got {v.dtype} with shape {v.shape}")
    if params.ring_bits < 64 and v.size and int(v.max()) >= params.modulus:
        raise _fail(f"{what} holds values >= 2**{params.ring_bits}")
    return v


def ring_sum(vectors: Iterable[np.ndarray], params: SecAggParams) -> np.ndarray:
    """Sum mod 2**k of equal-length ring vectors (uint64 wraps mod 2**64, a multiple of 2**k)."""
    total = None
    for i, v in enumerate(vectors):
        v = _vector(v, params, f"vector {i}")
        if total is None:
            total = v.copy()
        elif v.shape != total.shape:
            raise _fail(f"vector {i} has {v.size} coordinates, the first {total.size}")
        else:
            total += v
    if total is None:
        raise _fail("nothing to sum: no vectors")
    return _reduce(total, params)


def _reduce(v: np.ndarray, params: SecAggParams) -> np.ndarray:
    if params.ring_bits < 64:
        v &= np.uint64(params.modulus - 1)
    return v


def dequantize(total: np.ndarray, n_total: int, params: SecAggParams) -> np.ndarray:
    """The average change (flat float64) from a ring sum of sample-weighted updates.

    The sum is read as a signed k-bit integer ``v``; the result is
    ``(float64(v) * 2**-s) / float64(N)``: two IEEE roundings, fixed order.
    """
    v = _vector(total, params, "the sum")
    n = params.check_total_samples(n_total)
    if params.ring_bits == 64:
        signed = v.view(np.int64)
    else:
        signed = v.astype(np.int64)
        signed[signed >= 1 << (params.ring_bits - 1)] -= params.modulus
    return signed.astype(np.float64) * 2.0 ** -params.scale_bits / float(n)


def aggregate(base: Sequence[np.ndarray], total: np.ndarray, n_total: int, params: SecAggParams) -> list[np.ndarray]:
    """The next global model: ``float32(float64(base) + dequantize(total, N))``, in the base's shapes.

    ``N`` is the survivors' total samples (as recorded on chain).
    """
    bs = _float32_list(base, "base")
    avg = dequantize(total, n_total, params)
    size = sum(b.size for b in bs)
    if avg.size != size:
        raise _fail(f"the sum has {avg.size} coordinates, the base model {size}")
    out, offset = [], 0
    for i, b in enumerate(bs):
        new = (b.astype(np.float64) + avg[offset : offset + b.size].reshape(b.shape)).astype(np.float32)
        if not np.isfinite(new).all():
            raise _fail(f"tensor {i} of the new model overflows float32")
        out.append(new)
        offset += b.size
    return out


# --------------------------------------------------------------------------- masks


def _private(private_key: bytes | str) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(_bytes32(private_key, "round private key"))


def _hkdf(ikm: bytes, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=info).derive(ikm)


def _pair_seed(sk: X25519PrivateKey, my_pk: bytes, me: str, peer: str, peer_pk: bytes, ctx: RoundContext) -> bytes:
    if peer_pk == my_pk:
        raise _fail(f"{peer} has the same round public key as {me}")
    (lo, lo_pk), (hi, hi_pk) = sorted([(_addr_bytes(me), my_pk), (_addr_bytes(peer), peer_pk)])
    shared = sk.exchange(X25519PublicKey.from_public_bytes(peer_pk))
    return _hkdf(shared, lo_pk + hi_pk, PAIR_INFO + ctx.binding() + lo + hi)


def pair_seed(private_key: bytes | str, me: str, peer: str, peer_public_key: bytes | str, ctx: RoundContext) -> bytes:
    """The 32-byte AES key of the mask between ``me`` and ``peer``; both ends derive the same one."""
    me, peer = _addr(me, "own address"), _addr(peer, "peer address")
    if me == peer:
        raise _fail(f"{me} cannot mask with itself")
    sk = _private(private_key)
    return _pair_seed(sk, sk.public_key().public_bytes_raw(), me, peer, check_public_key(peer_public_key), ctx)


def _stream(key: bytes, length: int, params: SecAggParams, zeros: bytes | None = None) -> np.ndarray:
    """AES-256-CTR keystream as ``length`` little-endian k-bit words (read-only view)."""
    data = zeros if zeros is not None else bytes(length * params.word_bytes)
    stream = Cipher(algorithms.AES(key), modes.CTR(_ZERO_BLOCK)).encryptor().update(data)
    return np.frombuffer(stream, dtype=f"<u{params.word_bytes}")


def _length(length: int) -> int:
    return _int(length, "vector length", 1, 2**40)


def mask_for(
    private_key: bytes | str, me: str, peers: Mapping[str, bytes | str], length: int, params: SecAggParams, ctx: RoundContext
) -> np.ndarray:
    """The sum mod 2**k of ``me``'s signed pairwise masks with ``peers`` (address -> round public key).

    ``+mask`` for a peer with a higher address, ``-mask`` for a lower one.
    """
    me, length = _addr(me, "own address"), _length(length)
    keys = check_participants(peers)
    if me in keys:
        raise _fail(f"{me} is among its own peers")
    sk = _private(private_key)
    my_pk = sk.public_key().public_bytes_raw()
    acc = np.zeros(length, dtype=np.uint64)
    zeros = bytes(length * params.word_bytes)
    for peer, pk in keys.items():
        stream = _stream(_pair_seed(sk, my_pk, me, peer, pk, ctx), length, params, zeros)
        if _addr_bytes(me) < _addr_bytes(peer):
            acc += stream
        else:
            acc -= stream
    return _reduce(acc, params)


def _self_key(seed: bytes, me: str, ctx: RoundContext) -> bytes:
    return _hkdf(_bytes32(seed, "self-mask seed"), None, SELF_INFO + ctx.binding() + _addr_bytes(_addr(me, "own address")))


def self_mask(seed: bytes, me: str, length: int, params: SecAggParams, ctx: RoundContext) -> np.ndarray:
    """The self mask of ``me``: AES-256-CTR under ``HKDF(seed, info=SELF_INFO | round | me)``."""
    return _stream(_self_key(seed, me, ctx), _length(length), params).astype(np.uint64)


def mask_update(
    q: np.ndarray,
    secrets: RoundSecrets,
    me: str,
    peers: Mapping[str, bytes | str],
    params: SecAggParams,
    ctx: RoundContext,
) -> np.ndarray:
    """``(q + mask_for(...) [+ self_mask(...)]) mod 2**k``: the vector a participant publishes."""
    q = _vector(q, params, "the quantized update")
    masked = q + mask_for(secrets.private_key, me, peers, q.size, params, ctx)
    if params.self_mask:
        if secrets.self_seed is None:
            raise _fail("this job uses self masks: the round secrets need a self-mask seed")
        masked += _stream(_self_key(secrets.self_seed, me, ctx), q.size, params)
    elif secrets.self_seed is not None:
        raise _fail("this job uses no self masks, but a self-mask seed was given")
    return _reduce(masked, params)


def unmask_sum(
    masked: Mapping[str, np.ndarray],
    public_keys: Mapping[str, bytes | str],
    dropped: Mapping[str, bytes | str],
    params: SecAggParams,
    ctx: RoundContext,
    self_seeds: Mapping[str, bytes] | None = None,
) -> np.ndarray:
    """The plain ring sum of the survivors' updates, from public data only.

    ``masked``: survivor -> its masked vector; ``public_keys``: round public keys
    of (at least) the survivors; ``dropped``: dropped participant -> its
    recovered round private key; ``self_seeds``: survivor -> its revealed (or
    recovered) seed, if the job uses self masks. No survivor's private key.
    A dropped participant's key is checked against ``public_keys`` when listed.
    """
    vectors = {_addr(a, "survivor address"): v for a, v in masked.items()}
    if len(vectors) != len(masked) or not vectors:
        raise _fail("masked vectors: give one per survivor, at least one")
    keys = {_addr(a, "participant address"): k for a, k in public_keys.items()}
    missing = [a for a in vectors if a not in keys]
    if missing:
        raise _fail(f"no round public key for survivor {missing[0]}")
    survivor_keys = check_participants({a: keys[a] for a in vectors})
    total = ring_sum([vectors[a] for a in sorted(vectors)], params)
    for address, private_key in dropped.items():
        d = _addr(address, "dropped address")
        if d in vectors:
            raise _fail(f"{d} is both a survivor and dropped")
        if d in keys and public_key_of(_bytes32(private_key, "recovered key")) != _bytes32(keys[d], "public key"):
            raise _fail(f"the recovered key of {d} is not the one it published")
        # d's own signed masks with the survivors are the opposite of what they added for d.
        total += mask_for(private_key, d, survivor_keys, total.size, params, ctx)
    seeds = {_addr(a, "survivor address"): s for a, s in (self_seeds or {}).items()}
    if params.self_mask:
        if set(seeds) != set(vectors):
            lacking = sorted(set(vectors) - set(seeds)) or sorted(set(seeds) - set(vectors))
            raise _fail(f"self-mask seeds must be given for exactly the survivors (check {lacking[0]})")
        zeros = bytes(total.size * params.word_bytes)
        for a in sorted(vectors):
            total -= _stream(_self_key(seeds[a], a, ctx), total.size, params, zeros)
    elif seeds:
        raise _fail("this job uses no self masks, but self-mask seeds were given")
    return _reduce(total, params)


# --------------------------------------------------------------------------- shares


@dataclass(frozen=True)
class Holder:
    """Who holds share ``index`` (1..65535, unique in the round): address and *registered* X25519 key."""

    index: int
    address: str
    public_key: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", _int(self.index, "holder index", 1, _MAX_INDEX))
        object.__setattr__(self, "address", _addr(self.address, "holder address"))
        object.__setattr__(self, "public_key", check_public_key(self.public_key, f"registered key of {self.address}"))


@dataclass(frozen=True)
class Share:
    """One Shamir share (two GF(2**128) halves at ``index``) and the salt of its commitment."""

    kind: int
    index: int
    value: bytes = field(repr=False)
    salt: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if self.kind not in (KIND_KEY, KIND_SEED):
            raise _fail(f"share kind must be {KIND_KEY} (key) or {KIND_SEED} (seed), got {self.kind!r}")
        object.__setattr__(self, "index", _int(self.index, "share index", 1, _MAX_INDEX))
        for name in ("value", "salt"):
            raw = getattr(self, name)
            if not isinstance(raw, (bytes, bytearray)) or len(raw) != 32:
                raise _fail(f"a share's {name} must be 32 bytes")
            object.__setattr__(self, name, bytes(raw))

    @property
    def commitment(self) -> bytes:
        return keccak(self.value + self.salt)


@dataclass(frozen=True)
class Dealing:
    """Everything a dealer publishes when it joins: all of it public, its :meth:`digest` on chain.

    ``holders`` sorted by index; ``key_commitments``, ``seed_commitments`` (empty
    without self masks) and ``encrypted`` (one sealed blob per holder) are aligned
    with them.
    """

    dealer: str
    public_key: bytes
    threshold: int
    seed_commitment: bytes | None
    holders: tuple[Holder, ...]
    key_commitments: tuple[bytes, ...]
    seed_commitments: tuple[bytes, ...]
    encrypted: tuple[bytes, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "dealer", _addr(self.dealer, "dealer"))
        object.__setattr__(self, "public_key", check_public_key(self.public_key, "dealer's round public key"))
        object.__setattr__(self, "threshold", _int(self.threshold, "threshold", 2, _MAX_INDEX))
        if self.seed_commitment is not None and len(self.seed_commitment) != 32:
            raise _fail("a seed commitment is 32 bytes")
        if not all(isinstance(h, Holder) for h in self.holders):
            raise _fail("holders must be Holder records")
        if [h.index for h in self.holders] != sorted({h.index for h in self.holders}):
            raise _fail("a dealing's holders must have distinct indices, in ascending order")
        n = len(self.holders)
        seeds = n if self.self_mask else 0
        if len(self.key_commitments) != n or len(self.seed_commitments) != seeds or len(self.encrypted) != n:
            raise _fail(f"a dealing for {n} holders needs {n} key commitments, {seeds} seed commitments, {n} blobs")
        if any(len(c) != 32 for c in self.key_commitments + self.seed_commitments):
            raise _fail("share commitments are 32 bytes each")

    @property
    def self_mask(self) -> bool:
        return self.seed_commitment is not None

    def position(self, holder: str) -> int:
        address = _addr(holder, "holder address")
        for i, h in enumerate(self.holders):
            if h.address == address:
                return i
        raise _fail(f"{address} holds no share of {self.dealer}")

    def commitment(self, kind: int, index: int) -> bytes:
        """The published commitment of share ``index`` of ``kind`` (what a revealed share is checked against)."""
        pos = next((i for i, h in enumerate(self.holders) if h.index == index), None)
        if pos is None:
            raise _fail(f"{self.dealer} dealt no share with index {index}")
        if kind == KIND_KEY:
            return self.key_commitments[pos]
        if kind == KIND_SEED and self.self_mask:
            return self.seed_commitments[pos]
        raise _fail(f"{self.dealer} dealt no shares of kind {kind}")

    def to_bytes(self) -> bytes:
        """Canonical bytes (the store's blob)::

            b"CFSD" | version 1 | flags (bit 0: self mask) | t (2) | count (2) | dealer (20)
              | round public key (32) | [seed commitment (32)]
              | count x ( index (2) | holder (20) | key commitment (32) | [seed commitment (32)]
                          | sealed share blob (encrypted_share_size) )
        """
        parts = [
            DEALING_MAGIC, bytes([VERSION, int(self.self_mask)]), self.threshold.to_bytes(2, "big"),
            len(self.holders).to_bytes(2, "big"), _addr_bytes(self.dealer), self.public_key,
        ]
        if self.self_mask:
            parts.append(self.seed_commitment)
        for i, h in enumerate(self.holders):
            parts += [h.index.to_bytes(2, "big"), _addr_bytes(h.address), self.key_commitments[i]]
            if self.self_mask:
                parts.append(self.seed_commitments[i])
            parts.append(self.encrypted[i])
        return b"".join(parts)

    @property
    def digest(self) -> bytes:
        """``keccak(to_bytes())``: the dealer signs it into the join transaction."""
        return keccak(self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> Dealing:
        """Parse a :meth:`to_bytes` blob; anything but the canonical encoding is refused."""
        data = bytes(data)
        head = len(DEALING_MAGIC) + 2 + 2 + 2 + 20 + KEY_SIZE
        if len(data) < head or data[:4] != DEALING_MAGIC or data[4] != VERSION or data[5] not in (0, 1):
            raise _fail(f"not a version-{VERSION} dealing blob ({len(data)} bytes)")
        self_mask = bool(data[5])
        t, count = int.from_bytes(data[6:8], "big"), int.from_bytes(data[8:10], "big")
        dealer, public_key = "0x" + data[10:30].hex(), data[30:62]
        offset, seed_c = head, None
        if self_mask:
            seed_c, offset = data[offset : offset + 32], offset + 32
        entry = 2 + 20 + 32 * (2 if self_mask else 1) + encrypted_share_size(self_mask)
        if len(data) != offset + count * entry:
            raise _fail(f"dealing blob is {len(data)} bytes, {offset + count * entry} expected for {count} holders")
        holders, keys, seeds, blobs = [], [], [], []
        for _ in range(count):
            index, holder = int.from_bytes(data[offset : offset + 2], "big"), "0x" + data[offset + 2 : offset + 22].hex()
            offset += 22
            keys.append(data[offset : offset + 32])
            offset += 32
            if self_mask:
                seeds.append(data[offset : offset + 32])
                offset += 32
            blob = data[offset : offset + encrypted_share_size(self_mask)]
            offset += len(blob)
            try:
                recipients = recipients_of(blob)
            except SealError as exc:
                raise _fail(f"the share blob for holder {index} is malformed: {exc}") from None
            if len(recipients) != 1:
                raise _fail(f"the share blob for holder {index} has {len(recipients)} recipients, not 1")
            holders.append(Holder(index, holder, recipients[0]))
            blobs.append(blob)
        dealing = cls(_addr(dealer, "dealer"), check_public_key(public_key, "dealer's round public key"), t, seed_c,
                      tuple(holders), tuple(keys), tuple(seeds), tuple(blobs))
        if dealing.to_bytes() != data:
            raise _fail("dealing blob is not canonical (holders must be sorted by index)")
        return dealing


def encrypted_share_size(self_mask: bool) -> int:
    """Bytes of one holder's sealed share blob: the payload plus :func:`ml.sealing.sealed_overhead` (1)."""
    return sealed_overhead(1) + _payload_size(self_mask)


def _payload_size(self_mask: bool) -> int:
    return len(SHARE_MAGIC) + 1 + 2 + 20 + (KEY_SIZE + SALT_SIZE) * (2 if self_mask else 1)


def dealing_size(n_holders: int, self_mask: bool = True) -> int:
    """Bytes of a :class:`Dealing` blob for ``n_holders`` holders."""
    per = 2 + 20 + 32 * (2 if self_mask else 1) + encrypted_share_size(self_mask)
    return len(DEALING_MAGIC) + 6 + 20 + KEY_SIZE + (32 if self_mask else 0) + n_holders * per


def _split(secret: bytes, t: int, indices: Sequence[int]) -> dict[int, bytes]:
    """32-byte shares at ``indices``: each 16-byte half split with its own random polynomial."""
    halves = [dict(Shamir.split(t, max(indices), secret[i : i + 16])) for i in (0, 16)]
    return {x: halves[0][x] + halves[1][x] for x in indices}


def _check_holders(holders: Sequence[Holder], dealer: str, t: int) -> tuple[Holder, ...]:
    hs = tuple(sorted(holders, key=lambda h: h.index))
    if not all(isinstance(h, Holder) for h in hs):
        raise _fail("holders must be Holder records")
    if len({h.index for h in hs}) != len(hs) or len({h.address for h in hs}) != len(hs):
        raise _fail("holder indices and addresses must be unique")
    if any(h.address == dealer for h in hs):
        raise _fail(f"the dealer {dealer} cannot hold its own share")
    if len(hs) < t:
        raise _fail(f"threshold {t} needs at least {t} holders, got {len(hs)}")
    return hs


def share_round_secret(
    secrets: RoundSecrets, dealer: str, holders: Sequence[Holder], t: int, ctx: RoundContext
) -> tuple[Dealing, tuple[bytes, ...]]:
    """Split the round private key (and self-mask seed) into t-of-n shares, one sealed blob per holder.

    Returns the public :class:`Dealing` and the content key of each holder's blob
    (same order as ``dealing.holders``): the dealer keeps them until the join phase
    closes, to answer a holder's complaint by disclosing one
    (:func:`open_disclosed_share` then lets anyone judge it).
    """
    dealer = _addr(dealer, "dealer")
    t = _int(t, "threshold", 2, _MAX_INDEX)
    hs = _check_holders(holders, dealer, t)
    if public_key_of(secrets.private_key) != secrets.public_key:
        raise _fail("the round secrets' public key does not match their private key")
    indices = [h.index for h in hs]
    kinds = [(KIND_KEY, secrets.private_key)]
    if secrets.self_seed is not None:
        kinds.append((KIND_SEED, secrets.self_seed))
    shares = {kind: _split(_bytes32(secret, "round secret"), t, indices) for kind, secret in kinds}
    salts = {kind: {x: os.urandom(SALT_SIZE) for x in indices} for kind, _ in kinds}
    commitments: dict[int, list[bytes]] = {kind: [] for kind, _ in kinds}
    blobs, content_keys = [], []
    seal_ctx = ctx.seal_context(dealer)
    for h in hs:
        payload = [SHARE_MAGIC, bytes([VERSION]), h.index.to_bytes(2, "big"), _addr_bytes(h.address)]
        for kind, _ in kinds:
            value, salt = shares[kind][h.index], salts[kind][h.index]
            payload += [value, salt]
            commitments[kind].append(keccak(value + salt))
        content_key = os.urandom(KEY_SIZE)
        blobs.append(seal(b"".join(payload), h.public_key, seal_ctx, content_key=content_key))
        content_keys.append(content_key)
    dealing = Dealing(dealer, secrets.public_key, t, secrets.seed_commitment, hs, tuple(commitments[KIND_KEY]),
                      tuple(commitments.get(KIND_SEED, ())), tuple(blobs))
    return dealing, tuple(content_keys)


def _read_payload(payload: bytes, dealing: Dealing, pos: int) -> dict[int, Share]:
    h = dealing.holders[pos]
    who = f"{dealing.dealer}'s share for {h.address}"
    if len(payload) != _payload_size(dealing.self_mask) or payload[:4] != SHARE_MAGIC or payload[4] != VERSION:
        raise _fail(f"{who} is not a version-{VERSION} share payload (dealer at fault)")
    if int.from_bytes(payload[5:7], "big") != h.index or payload[7:27] != _addr_bytes(h.address):
        raise _fail(f"{who} names another holder or index (dealer at fault)")
    out, offset = {}, 27
    for kind in (KIND_KEY, KIND_SEED) if dealing.self_mask else (KIND_KEY,):
        share = Share(kind, h.index, payload[offset : offset + 32], payload[offset + 32 : offset + 64])
        offset += 64
        if not hmac.compare_digest(share.commitment, dealing.commitment(kind, h.index)):
            raise _fail(f"{who} (kind {kind}) does not match its published commitment (dealer at fault)")
        out[kind] = share
    return out


def open_share(holder_private_key: bytes | str, dealing: Dealing, holder: str, ctx: RoundContext) -> dict[int, Share]:
    """The holder's shares of ``dealing`` (kind -> :class:`Share`), each checked against its commitment.

    Fails if the blob does not open with this key in this (chain, contract,
    round, dealer), names another holder, or does not match the commitments.
    """
    pos = dealing.position(holder)
    try:
        payload = open_sealed(dealing.encrypted[pos], holder_private_key, ctx.seal_context(dealing.dealer),
                              recipients=[dealing.holders[pos].public_key])
    except SealError as exc:
        raise _fail(f"{dealing.dealer}'s share for {dealing.holders[pos].address} does not open: {exc}") from None
    return _read_payload(payload, dealing, pos)


def open_disclosed_share(content_key: bytes, dealing: Dealing, holder: str, ctx: RoundContext) -> dict[int, Share]:
    """:func:`open_share` for anyone, with the blob's content key disclosed by its dealer.

    How a holder's complaint is judged: the dealer discloses the key; a key that
    is not the blob's, or a payload that does not match, is the dealer's fault.
    """
    pos = dealing.position(holder)
    try:
        payload = open_with_content_key(dealing.encrypted[pos], content_key, ctx.seal_context(dealing.dealer),
                                        recipients=[dealing.holders[pos].public_key])
    except SealError as exc:
        raise _fail(f"{dealing.dealer}'s share for {dealing.holders[pos].address} does not open: {exc}") from None
    return _read_payload(payload, dealing, pos)


def check_dealing(dealing: Dealing, params: SecAggParams, dealer: str, public_key: bytes | str,
                  holders: Sequence[Holder]) -> None:
    """The checks anyone runs on a join, without a key: right dealer, key, t, holders, recipients."""
    dealer = _addr(dealer, "dealer")
    if dealing.dealer != dealer:
        raise _fail(f"the dealing is {dealing.dealer}'s, not {dealer}'s")
    if dealing.public_key != check_public_key(public_key, f"round public key of {dealer}"):
        raise _fail(f"{dealer}'s dealing is for another round public key than the one published")
    if dealing.threshold != params.threshold:
        raise _fail(f"{dealer} dealt {dealing.threshold}-of-n shares, the job's threshold is {params.threshold}")
    if dealing.self_mask != params.self_mask:
        raise _fail(f"{dealer}'s dealing {'has' if dealing.self_mask else 'lacks'} a self-mask seed, against the job")
    expected = _check_holders(holders, dealer, params.threshold)
    if [(h.index, h.address, h.public_key) for h in dealing.holders] != [(h.index, h.address, h.public_key) for h in expected]:
        raise _fail(f"{dealer} dealt shares to other holders (or indices, or keys) than the round's")
    for h, blob in zip(expected, dealing.encrypted):
        if len(blob) != encrypted_share_size(dealing.self_mask):
            raise _fail(f"{dealer}'s share blob for {h.address} is {len(blob)} bytes, not {encrypted_share_size(dealing.self_mask)}")
        try:
            require_recipients(blob, [h.public_key])
        except SealError as exc:
            raise _fail(f"{dealer}'s share blob for {h.address} is not sealed to its registered key: {exc}") from None


def check_revealed(share: bytes, salt: bytes, commitment: bytes) -> bool:
    """What anyone checks when a survivor reveals a share: ``keccak(share || salt) == commitment``."""
    if not all(isinstance(b, (bytes, bytearray)) and len(b) == 32 for b in (share, salt, commitment)):
        return False
    return hmac.compare_digest(keccak(bytes(share) + bytes(salt)), bytes(commitment))


def shares_to_reveal(
    opened: Mapping[str, Mapping[int, Share]], dropped: Iterable[str], unrevealed_survivors: Iterable[str] = ()
) -> dict[str, Share]:
    """Dealer -> the one share a holder reveals: the key share of a dropped dealer, the seed share of a
    survivor that did not reveal its own seed. Never both of one dealer (that would expose its update)."""
    drop = {_addr(a, "dropped address") for a in dropped}
    late = {_addr(a, "survivor address") for a in unrevealed_survivors}
    both = drop & late
    if both:
        raise _fail(f"{sorted(both)[0]} cannot be both dropped and a survivor")
    shares = {_addr(a, "dealer"): s for a, s in opened.items()}
    out = {}
    for dealer in sorted(drop | late):
        kind = KIND_KEY if dealer in drop else KIND_SEED
        if dealer in shares and kind in shares[dealer]:
            out[dealer] = shares[dealer][kind]
    return out


def _combine(shares: Sequence[Share], t: int, kind: int) -> bytes:
    t = _int(t, "threshold", 2, _MAX_INDEX)
    if any(not isinstance(s, Share) or s.kind != kind for s in shares):
        raise _fail(f"all shares must be Share records of kind {kind}")
    if len({s.index for s in shares}) != len(shares):
        raise _fail("two shares have the same index")
    if len(shares) < t:
        raise _fail(f"{len(shares)} share(s) cannot recover a secret dealt with threshold {t}")
    chosen = sorted(shares, key=lambda s: s.index)[:t]  # deterministic: the t lowest indices
    halves = [Shamir.combine([(s.index, s.value[i : i + 16]) for s in chosen]) for i in (0, 16)]
    return halves[0] + halves[1]


def reconstruct_secret(shares: Sequence[Share], t: int, expected_public_key: bytes | str) -> bytes:
    """A dropped participant's round private key from t key shares (the t lowest indices).

    pycryptodome interpolates whatever it is given, so a wrong result is only
    detected here: the key must give the published public key.
    """
    expected = _bytes32(expected_public_key, "expected public key")
    secret = _combine(shares, t, KIND_KEY)
    if not hmac.compare_digest(public_key_of(secret), expected):
        raise _fail("the shares do not rebuild the published round key (too few, or inconsistent shares: dealer at fault)")
    return secret


def reconstruct_seed(shares: Sequence[Share], t: int, expected_commitment: bytes) -> bytes:
    """A survivor's self-mask seed from t seed shares, accepted only if ``keccak(seed)`` is its commitment."""
    seed = _combine(shares, t, KIND_SEED)
    if not hmac.compare_digest(keccak(seed), bytes(expected_commitment)):
        raise _fail("the shares do not rebuild the committed self-mask seed (too few, or inconsistent shares)")
    return seed


# --------------------------------------------------------------------------- wire format


def vector_blob_size(length: int, params: SecAggParams) -> int:
    """Bytes of a masked vector blob: 14-byte header + ``length * ring_bits / 8``."""
    return VECTOR_HEADER_SIZE + length * params.word_bytes


def encode_vector(vector: np.ndarray, params: SecAggParams) -> bytes:
    """``b"CFSM" | version | ring_bits | length (8 BE) | words (k/8 bytes each, little-endian)``."""
    v = _vector(vector, params, "the vector")
    head = VECTOR_MAGIC + bytes([VERSION, params.ring_bits]) + v.size.to_bytes(8, "big")
    return head + v.astype(f"<u{params.word_bytes}").tobytes()


def decode_vector(data: bytes, params: SecAggParams, length: int) -> np.ndarray:
    """The uint64 vector of an :func:`encode_vector` blob of exactly ``length`` coordinates in this ring."""
    data = bytes(data)
    length = _length(length)
    if data[:4] != VECTOR_MAGIC or len(data) < VECTOR_HEADER_SIZE or data[4] != VERSION:
        raise _fail(f"not a version-{VERSION} masked vector blob ({len(data)} bytes)")
    if data[5] != params.ring_bits:
        raise _fail(f"masked vector is in a {data[5]}-bit ring, the job's is {params.ring_bits}")
    declared = int.from_bytes(data[6:14], "big")
    if declared != length or len(data) != vector_blob_size(length, params):
        raise _fail(f"masked vector has {declared} coordinates ({len(data)} bytes), the model {length}")
    return np.frombuffer(data, dtype=f"<u{params.word_bytes}", offset=VECTOR_HEADER_SIZE).astype(np.uint64)
