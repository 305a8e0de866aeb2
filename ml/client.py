"""One participant: fetch the global model -> train -> encode -> seal -> store -> submit.

The client holds only its own data and its account. It is restartable: before
doing anything for a round it asks the chain whether it already submitted, so a
process killed after `submitUpdate` never submits twice, and one killed before
it simply trains again (the new blob is sealed afresh, so its commitment is new).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import attacks, codec
from .chain import ChainError, FLContract, Phase, UpdateStatus
from .models import ModelSpec, tensor_names
from .sealing import SealContext, seal
from .store import BlobStore, LocalStore
from .timing import Timings
from .training import DEFAULT_BATCH_SIZE, DEFAULT_LEARNING_RATE, train_local


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 1
    batch_size: int = DEFAULT_BATCH_SIZE
    learning_rate: float = DEFAULT_LEARNING_RATE
    mu: float = 0.0  # FedProx proximal term; 0 = plain FedAvg


@dataclass(frozen=True)
class SubmitResult:
    round_id: int
    client: str
    commitment: bytes
    samples: int
    locator: str
    train_loss: float
    skipped: str | None = None  # why nothing was submitted (already submitted, round closed, ...)


RESEAL_ATTEMPTS = 3


class ClientError(RuntimeError):
    pass


class Client:
    """A data holder in the federation."""

    def __init__(
        self,
        account: Any,
        fl: FLContract,
        store: BlobStore,
        spec: ModelSpec,
        x: np.ndarray,
        y: np.ndarray,
        *,
        train: TrainConfig = TrainConfig(),
        chain_id: int,
        seed: int = 0,
        attack: str | None = None,
        timings: Timings | None = None,
    ):
        if len(x) == 0:
            raise ClientError(f"client {account.address} has no training data")
        self.account = account
        self.fl = fl
        self.store = store
        self.spec = spec
        self.x = x
        self.y = attacks.flip_labels(y, spec.num_classes) if attack == "labelflip" else y
        self.train_cfg = train
        self.chain_id = chain_id
        self.seed = seed
        self.attack = attacks.check_attack(attack) if attack else None
        self.timings = timings or Timings()
        self.names = tensor_names(spec)

    @property
    def address(self) -> str:
        return str(self.account.address)

    def has_submitted(self, round_id: int) -> bool:
        return self.fl.update(round_id, self.address).status != UpdateStatus.NONE

    def fetch_model(self, model_hash: bytes, locator: str | None = None) -> list[np.ndarray]:
        """The global model whose keccak-256 is `model_hash` (the store verifies the hash)."""
        blob = self.store.get(model_hash, locator)
        weights = codec.decode(blob, self.spec)
        codec.validate(weights, self.spec)
        return weights

    def participate(self, round_id: int) -> SubmitResult:
        """Train on the round's base model and submit, unless already done."""
        with self.timings.measure("chain"):
            info = self.fl.round(round_id)
            u = self.fl.update(round_id, self.address)
        if info.phase != Phase.OPEN:
            return SubmitResult(round_id, self.address, b"", 0, "", float("nan"), skipped=f"round is {info.phase.name.lower()}")
        if u.status != UpdateStatus.NONE:
            return SubmitResult(round_id, self.address, u.commitment, u.samples, "", float("nan"), skipped="already submitted")

        base = self.fetch_model(info.base_model_hash)
        with self.timings.measure("training"):
            result = train_local(
                self.spec, base, self.x, self.y,
                epochs=self.train_cfg.epochs, batch_size=self.train_cfg.batch_size,
                learning_rate=self.train_cfg.learning_rate, mu=self.train_cfg.mu,
                seed=self.seed * 1_000_003 + round_id,
            )
        weights = result.weights
        if self.attack in attacks.WEIGHT_ATTACKS:
            weights = attacks.apply_weight_attack(self.attack, weights, base)

        with self.timings.measure("encode_seal_store"):
            blob = self._sealed_blob(weights, round_id)
            commitment, locator = self._store(blob)

        samples = result.num_samples * (attacks.INFLATE_FACTOR if self.attack == "inflate" else 1)
        with self.timings.measure("chain"):
            commitment, locator = self._submit(round_id, weights, commitment, locator, samples)
        return SubmitResult(round_id, self.address, commitment, samples, locator, float(result.loss))

    def _submit(self, round_id: int, weights: list[np.ndarray], commitment: bytes, locator: str,
                samples: int) -> tuple[bytes, str]:
        """Submits; a commitment this client used before (a replayed blob) is sealed afresh and sent again.

        Sealing draws a fresh key and nonce, so the new blob has a new commitment; the contract
        refuses a commitment only per client, so no other client can make this fail.
        """
        for attempt in range(RESEAL_ATTEMPTS):
            try:
                self.fl.submit(self.account, round_id, commitment, samples, locator)
                return commitment, locator
            except ChainError as exc:
                if exc.error_name != "CommitmentAlreadyUsed" or attempt == RESEAL_ATTEMPTS - 1:
                    raise
            with self.timings.measure("encode_seal_store"):
                commitment, locator = self._store(self._sealed_blob(weights, round_id))
        raise AssertionError("unreachable")  # pragma: no cover

    def seal_context(self, round_id: int) -> SealContext:
        return SealContext(chain_id=self.chain_id, contract=self.fl.address, round_id=round_id, client=self.address)

    def _sealed_blob(self, weights: list[np.ndarray], round_id: int) -> bytes:
        if self.attack == "garbage":
            return np.random.default_rng(self.seed + round_id).bytes(256)
        plain = codec.encode(weights, self.names)
        recipient = self.fl.params(fresh=True).aggregatorKey  # the key may be rotated between rounds
        return seal(plain, recipient, self.seal_context(round_id))

    def _store(self, blob: bytes) -> tuple[bytes, str]:
        if self.attack == "badlocator":
            # Commits to the blob but withholds it behind a locator nobody can resolve.
            return codec.keccak(blob), attacks.BAD_LOCATOR
        commitment = self.store.put(blob)
        locator = self.store.locator(commitment)
        if self.attack == "tamper":
            bad = attacks.tamper(blob)
            if isinstance(self.store, LocalStore):
                # The file under the commitment now holds other bytes.
                self.store.path_for(commitment).write_bytes(bad)
            else:
                self.store.put(bad)
        return commitment, locator

    def claim_all(self, rounds: list[int]) -> int:
        """Claims every claimable reward among `rounds` and withdraws; returns wei received."""
        with self.timings.measure("chain"):
            for r in rounds:
                if self.fl.claimable(r, self.address) > 0:
                    self.fl.claim(self.account, r)
            if self.fl.owed(self.address) > 0:
                return self.fl.withdraw_rewards(self.account)
        return 0
