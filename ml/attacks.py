"""Simulated misbehaving clients, for tests, demos and the robustness benchmark.

Each attack is a small pure function over weights (or labels) so the same code
drives `ape run federated_round --attackers`, the e2e tests and bench/.
Blob-level attacks (a tampered or replayed blob) live in the client, since they
act on the sealed bytes and the store.
"""
from __future__ import annotations

import numpy as np

WEIGHT_ATTACKS = ("signflip", "scale", "nan")
DATA_ATTACKS = ("labelflip",)
BLOB_ATTACKS = ("tamper", "garbage", "badlocator")
# Claims 100x its real sample count (the FedAvg weight and the reward share): an open job's only
# defence is its per-update cap; a permissioned job refuses anything above the registrar's allowance.
SAMPLE_ATTACKS = ("inflate",)
INFLATE_FACTOR = 100
ATTACKS = WEIGHT_ATTACKS + DATA_ATTACKS + BLOB_ATTACKS + SAMPLE_ATTACKS

Weights = list[np.ndarray]


class UnknownAttackError(ValueError):
    pass


def check_attack(name: str) -> str:
    if name not in ATTACKS:
        raise UnknownAttackError(f"unknown attack {name!r}; choose one of: {', '.join(ATTACKS)}")
    return name


def sign_flip(trained: Weights, base: Weights, factor: float = 10.0) -> Weights:
    """Sends the opposite of the honest update, scaled: base - factor * (trained - base)."""
    return [(b - factor * (t - b)).astype(np.float32) for t, b in zip(trained, base)]


def scale(trained: Weights, base: Weights, factor: float = 10.0) -> Weights:
    """Boosts the honest update (model replacement): base + factor * (trained - base)."""
    return [(b + factor * (t - b)).astype(np.float32) for t, b in zip(trained, base)]


def poison_nan(trained: Weights) -> Weights:
    """Puts a NaN in the first tensor: provably invalid, must be rejected."""
    out = [w.copy() for w in trained]
    out[0].flat[0] = np.nan
    return out


def flip_labels(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Data poisoning: label c becomes num_classes - 1 - c."""
    return (num_classes - 1 - np.asarray(y)).astype(y.dtype)


def apply_weight_attack(name: str, trained: Weights, base: Weights) -> Weights:
    if name == "signflip":
        return sign_flip(trained, base)
    if name == "scale":
        return scale(trained, base)
    if name == "nan":
        return poison_nan(trained)
    return trained


def tamper(blob: bytes) -> bytes:
    """Flips one byte in the middle of a sealed blob (the commitment no longer matches)."""
    b = bytearray(blob)
    b[len(b) // 2] ^= 0xFF
    return bytes(b)


BAD_LOCATOR = "ipfs://x-y"
"""What a `badlocator` client records instead of its real locator (its blob is published nowhere).

Not a CID: before the fix of M-3 the aggregator's IPFS store raised a spec error on it and the
aggregator stopped (again at every restart); now it is `missing_blob` for that client."""
