"""`ape run client`: register, train on the holder's own data, submit, claim, repeat.

One participant: fetch the global model -> train -> encode -> seal -> store -> submit. In a private
job (secure aggregation): join (a fresh round key, Shamir shares dealt to the registered keys) ->
train -> clip, quantize, mask -> store publicly -> submit -> reveal once submissions close.

The client holds only its own data and its account. It is restartable: before
doing anything for a round it asks the chain whether it already submitted, so a
process killed after `submitUpdate` never submits twice, and one killed before
it simply trains again (the new blob is sealed afresh, so its commitment is new).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import attacks, codec
from ..chain import ChainError, ClientStatus, FLContract, Phase, UpdateStatus
from ..models import ModelSpec, tensor_names
from ..sealing import SealContext, seal
from ..store import BlobStore, LocalStore
from ..timing import Timings
from ..parallel import TrainTask, train_task
from ..training import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_LEARNING_RATE, TrainConfig, TrainResult
from .deploy import Job
from .lifecycle import (
    RACES,
    Log,
    PartyError,
    Stop,
    chain_now,
    check_data_fits,
    ensure_funds,
    fmt_eth,
    round_closed,
    run_until_done,
    transient_errors,
    short,
)


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
        index: int = 0,
        registered_key: bytes | None = None,
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
        self.index = index  # its place among a federation's clients: a TrainingPool's key for its data
        self._sealing_key: dict[int, bytes] = {}  # round -> the aggregator key its view named
        # Private mode: the X25519 private key registered on chain (holders' shares are sealed to it),
        # and each joined round's secrets (round key pair, self-mask seed), kept until the round closes.
        self.registered_key = registered_key
        self._round_secrets: dict[int, Any] = {}
        self.secrets_dir: Path | None = None  # where a client process keeps each joined round's secrets (0600)

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

    def participate(self, round_id: int, info: Any = None, view: Any = None) -> SubmitResult:
        """Train on the round's base model and submit, unless already done (`info`: the round's record,
        or `view`: its roundView for this client, if the caller has just read it). The three steps
        below, in this process."""
        task = self.prepare(round_id, info, view)
        if isinstance(task, SubmitResult):
            return task
        with self.timings.measure("training"):
            result = self.train(task)
        return self.finish(task, result)

    def prepare(self, round_id: int, info: Any = None, view: Any = None) -> SubmitResult | TrainTask:
        """What this round's training needs (the checked base model, the seed), or why there is nothing
        to do. Separate from training so that a federation can train many clients in parallel.

        One view (the round, this client's update in it, the key to seal to), unless `view` is given."""
        with self.timings.measure("chain"):
            if view is None or view.round_id != round_id:
                view = self.fl.round_view(round_id, self.address)
            info, u = (info if info is not None else view.round), view.update
            self._sealing_key[round_id] = view.aggregator_key
        if info.phase != Phase.OPEN:
            return SubmitResult(round_id, self.address, b"", 0, "", float("nan"), skipped=f"round is {info.phase.name.lower()}")
        if u.status != UpdateStatus.NONE:
            return SubmitResult(round_id, self.address, u.commitment, u.samples, "", float("nan"), skipped="already submitted")
        base = self.fetch_model(info.base_model_hash)
        return TrainTask(client=self.index, round_id=round_id, weights=base, config=self.train_cfg,
                         seed=self.seed * 1_000_003 + round_id)

    def train(self, task: TrainTask) -> TrainResult:
        """Local training on this client's own data, here (a TrainingPool runs the same call in a worker)."""
        return train_task(self.spec, self.x, self.y, task)

    def finish(self, task: TrainTask, result: TrainResult) -> SubmitResult:
        """Attack (if simulated), seal, store and submit the trained weights."""
        round_id, base = task.round_id, task.weights
        weights = result.weights
        if self.attack in attacks.WEIGHT_ATTACKS:
            weights = attacks.apply_weight_attack(self.attack, weights, base)

        with self.timings.measure("encode_seal_store"):
            if self.fl.params().private:
                blob = self._masked_blob(weights, base, result.num_samples, round_id)
            else:
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

    # ------------------------------------------------------------ private mode

    def _round_context(self, round_id: int) -> Any:
        from ..secagg import RoundContext

        return RoundContext(self.chain_id, self.fl.address, round_id)

    def join_private(self, round_id: int, registry: dict[str, bytes]) -> bool:
        """Joins a private round: a fresh round key, its Shamir shares dealt to every other registered
        client (sealed to its registered key), the public dealing stored, its digest on chain. False
        when already joined (or the round is not open)."""
        from ..private import holders_for
        from ..secagg import new_round_secrets, share_round_secret

        fl = self.fl
        with self.timings.measure("chain"):
            view = fl.round_view(round_id, self.address)
        if view.round.phase != Phase.OPEN or view.join.joined:
            return False
        params = fl.params().secagg
        with self.timings.measure("encode_seal_store"):
            secrets = new_round_secrets(params)
            dealing, _ = share_round_secret(secrets, self.address, holders_for(self.address, registry),
                                            params.threshold, self._round_context(round_id))
            blob = dealing.to_bytes()
            digest = self.store.put(blob)
        self._round_secrets[round_id] = secrets
        self._save_round_secrets(round_id, secrets)  # before joining: a restart after the join can go on
        with self.timings.measure("chain"):
            fl.join(self.account, round_id, secrets.public_key, digest, self.store.locator(digest))
        return True

    def _secret_files(self, round_id: int) -> tuple[Path, Path] | None:
        if self.secrets_dir is None:
            return None
        stem = f"round-{self.chain_id}-{self.fl.address}-{round_id}"
        return self.secrets_dir / f"{stem}.key", self.secrets_dir / f"{stem}.seed"

    def _save_round_secrets(self, round_id: int, secrets: Any) -> None:
        from ..sealing import save_private_key

        files = self._secret_files(round_id)
        if files is None:
            return
        save_private_key(files[0], secrets.private_key)  # mode 0600, like every key of ours
        if secrets.self_seed is not None:
            save_private_key(files[1], secrets.self_seed)

    def load_round_secrets(self, round_id: int, round_key: bytes) -> bool:
        """The secrets of a round this client joined before a restart, if it kept them and they are the ones
        it joined with (the round key on chain)."""
        from ..sealing import KeyFileError, load_private_key, public_key_of
        from ..secagg import RoundSecrets

        files = self._secret_files(round_id)
        if files is None or not files[0].exists():
            return False
        try:
            private = load_private_key(files[0])
            seed = load_private_key(files[1]) if files[1].exists() else None
        except KeyFileError:
            return False
        if public_key_of(private) != round_key:
            return False
        self._round_secrets[round_id] = RoundSecrets(private, round_key, seed)
        return True

    def forget_round_secrets(self, round_id: int) -> None:
        """Once revealed (or the round closed) the secrets are of no use: delete them."""
        self._round_secrets.pop(round_id, None)
        for f in self._secret_files(round_id) or ():
            f.unlink(missing_ok=True)

    def _masked_blob(self, weights: list[np.ndarray], base: list[np.ndarray], samples: int, round_id: int) -> bytes:
        """The update clipped, quantized, weighted by its samples and masked with every other participant:
        a public blob that reveals nothing about the update (ml.secagg)."""
        from ..secagg import encode_vector, mask_update, quantize

        secrets = self._round_secrets.get(round_id)
        if secrets is None:
            raise ClientError(f"round {round_id}: this client has no round secrets (it did not join in this "
                              "process); it cannot mask, and sits the round out")
        job = self.fl.params()
        params = job.secagg
        peers = {p.address: p.round_key for p in self.fl.participants(round_id) if p.address != self.address}
        if job.dp is not None:
            q = self._noised(weights, base, job.dp, params)
        else:
            q = quantize(weights, base, samples, params)
        masked = mask_update(q, secrets, self.address, peers, params, self._round_context(round_id))
        if self.attack == "garbage":
            return np.random.default_rng(self.seed + round_id).bytes(256)
        return encode_vector(masked, params)

    def _noised(self, weights: list[np.ndarray], base: list[np.ndarray], dp: Any, params: Any) -> np.ndarray:
        """Distributed DP (Kairouz et al. 2021): the change clipped to L2 norm C, quantized with weight 1,
        plus this client's discrete Gaussian share of the noise, drawn from fresh local randomness."""
        import os

        from ..dp import clip_update, distributed_noise, distributed_sigma
        from ..secagg import _reduce, quantize

        clipped = clip_update(base, weights, dp.clip).weights
        q = quantize(clipped, base, 1, params)
        sigma = distributed_sigma(dp.noise, dp.clip, params.scale_bits, q.size, params.threshold)
        noise = distributed_noise(q.size, sigma, os.urandom(32))  # fresh: nobody can re-draw it
        return _reduce(q + noise.astype(np.uint64), params)

    def reveal_private(self, round_id: int) -> bool:
        """As a survivor, reveal the self-mask seed and the key shares of the dropped (once submissions are
        closed). False when there is nothing to reveal (not a survivor, already revealed)."""
        from ..private import make_reveal
        from ..secagg import Dealing

        fl = self.fl
        with self.timings.measure("chain"):
            view = fl.round_view(round_id, self.address)
            if view.update.status == UpdateStatus.NONE or view.join.revealed or round_id not in self._round_secrets:
                return False
            parts = fl.participants(round_id, view.round)
        dropped = [p for p in parts if not p.survivor]
        dealings = {}
        for p in dropped:
            try:
                dealings[p.address] = Dealing.from_bytes(self.store.get(p.dealing_digest, p.dealing_locator or None))
            except Exception:  # noqa: BLE001 - an unusable dealing is its dealer's fault (not revealed)
                continue
        with self.timings.measure("encode_seal_store"):
            rev = make_reveal(round_id, self.address, self._round_secrets[round_id], dealings,
                              [p.address for p in dropped], self.registered_key, self._round_context(round_id))
            digest = self.store.put(rev.to_bytes())
        with self.timings.measure("chain"):
            fl.reveal(self.account, round_id, digest, self.store.locator(digest))
        return True

    def seal_context(self, round_id: int) -> SealContext:
        return SealContext(chain_id=self.chain_id, contract=self.fl.address, round_id=round_id, client=self.address)

    def _sealed_blob(self, weights: list[np.ndarray], round_id: int) -> bytes:
        if self.attack == "garbage":
            return np.random.default_rng(self.seed + round_id).bytes(256)
        plain = codec.encode(weights, self.names)
        # The aggregator and every verifier must be able to open it (the key may be rotated between rounds:
        # the round's view said which it is).
        key = self._sealing_key.get(round_id) or self.fl.params(round_id=round_id).aggregatorKey
        recipients = [key, *self.fl.committee().keys]
        return seal(plain, recipients, self.seal_context(round_id))

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
            due = [r for r in rounds if self.fl.claimable(r, self.address) > 0]
            if due:
                self.fl.claim_many(self.account, due)  # one transaction for all of them
            if self.fl.owed(self.address) > 0:
                return self.fl.withdraw_rewards(self.account)
        return 0






# --------------------------------------------------------------------------- client

# Rounds before the last submitted one that a restarted client looks at for unclaimed rewards.
RECENT_ROUNDS = 3
# Gas the funds pre-check reserves for register (it costs 0.11-0.16 M) and one round's submitUpdate.
REGISTER_GAS = 2 * 160_000 + 150_000


@dataclass
class ClientOptions:
    rounds: int = 0  # stop once the job's round `rounds` is closed (and paid); 0 = run until stopped
    stake: int | None = None  # wei to stake when registering; None = the job's minimum
    top_up: bool = False  # top the stake up to the minimum after a slash
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE
    learning_rate: float = DEFAULT_LEARNING_RATE
    mu: float = 0.0
    seed: int | None = None  # training seed; None = derived from the address
    poll: float = 0.5
    max_poll: float = 5.0
    claim_every: int = 1  # withdraw the claimed rewards every N rounds (and at exit); claims are one transaction
    key_file: str | None = None  # the registered X25519 key (private mode opens its shares with it);
    # None = client-<address>.key next to the deployments file


class KeyRegistry:
    """Registered clients' X25519 keys (the chain is the PKI), read from ClientRegistered events with a cursor:
    each block once, across restarts."""

    def __init__(self, fl: FLContract, cursor: Any = None):
        from ..logs import Cursor

        self.fl = fl
        self.cursor = cursor or Cursor(None, "ClientRegistered keys", fl.deploy_block)

    def refresh(self) -> dict[str, bytes]:
        from ..chain import head_block

        head = head_block()
        if head >= self.cursor.block:
            new = self.fl.registered_keys(self.cursor.block, head)
            self.cursor.advance(head + 1, (f"{a}:0x{k.hex()}" for a, k in new.items()))
        return {a: bytes.fromhex(k[2:]) for a, k in (x.split(":", 1) for x in self.cursor.items)}


def _head(fl: FLContract) -> int:
    """The chain's head block number (one eth_blockNumber, not a contract view): polls read views only
    after it moved. A reorg to the same height is still seen: confirmed views read below the head."""
    from ..chain import head_block

    return head_block()


class ClientParty:
    """A data holder's loop. Holds its account and its own data file, nothing else."""

    def __init__(self, account: Any, job: Job, x: np.ndarray, y: np.ndarray, opts: ClientOptions,
                 stop: Stop | None = None, log: Callable[[str], None] | None = None, data_name: str = "data"):
        check_data_fits(x, y, job.spec, data_name)
        self.account = account
        self.address = str(account.address)
        self.job = job
        self.opts = opts
        self.stop = stop or Stop()
        self.log = log or Log(f"client {self.address[:8]}")
        seed = opts.seed if opts.seed is not None else int(self.address, 16) % 4000  # seed * 1_000_003 + round < 2**32
        self.client = Client(account, job.fl, job.store, job.spec, x, y,
                             train=TrainConfig(opts.epochs, opts.batch_size, opts.learning_rate, opts.mu),
                             chain_id=job.chain_id, seed=seed)
        self.registry = KeyRegistry(job.fl, job.cursor("ClientRegistered keys"))
        folder = job.cursor_file.parent if job.cursor_file is not None else Path(".")
        self.client.secrets_dir = folder / f"client-{self.address}.rounds"
        self.submitted: set[int] = set()  # rounds this client has an update in
        self.settled: set[int] = set()  # of those, rounds whose reward question is closed
        self.missed: set[int] = set()
        self.received = 0
        self.pool_warned = False  # the dry-pool warning is said once
        # Submissions not yet under `confirmations` blocks: round -> (result, block it was seen in).
        self.unconfirmed: dict[int, tuple[Any, int]] = {}
        self._after_submit: tuple[int, Any] | None = None  # (head, view) of the step that just submitted
        self._decided: dict[int, tuple[Any, int]] = {}  # round -> (its decided view, self._books then)
        self._newest_decided: Any = None  # the newest decided round's view
        self._books = 0  # claims and withdrawals sent: a view read before the last one has a stale `owed`
        self._reveal_tried: set[int] = set()  # private rounds whose reveal was attempted (once a process)

    def warm_up(self) -> None:
        """Imports TensorFlow before the first round, so that a round does not wait for it."""
        from ..models import import_keras

        import_keras()

    def _ensure_registered(self) -> None:
        fl = self.job.fl
        params = fl.params()
        info = fl.client(self.address)
        if params.permissioned:
            allowance = fl.allowance(self.address)
            if allowance == 0:
                raise PartyError(f"{fl.address} is a permissioned job and {self.address} is not admitted: ask its "
                                 f"registrar to run `ape run admit --client {self.address} --samples "
                                 f"{len(self.client.x)}`")
            if len(self.client.x) > allowance:
                raise PartyError(f"the registrar admitted {self.address} for {allowance} samples per update, but "
                                 f"its data has {len(self.client.x)}: ask for a larger allowance, or train on a file "
                                 f"of at most {allowance} samples")
        if info.status == ClientStatus.NONE:
            stake = self.opts.stake if self.opts.stake is not None else params.minStake
            if stake < params.minStake:
                raise PartyError(f"--stake {fmt_eth(stake)} is below the job's minimum stake "
                                 f"{fmt_eth(params.minStake)}")
            ensure_funds(self.account, stake, "registering", gas=REGISTER_GAS)
            from ..sealing import generate_keypair, save_private_key

            key_file = self._key_file()
            if not key_file.exists():
                save_private_key(key_file, generate_keypair().private)  # mode 0600, never printed
            self.client.registered_key = self._load_key(key_file)
            from ..sealing import public_key_of

            fl.register(self.account, public_key_of(self.client.registered_key), stake)
            self.log(f"registered with a stake of {fmt_eth(stake)} (its X25519 key in {key_file})")
        elif info.status == ClientStatus.EXITING:
            raise PartyError(f"{self.address} has requested exit from this job; it can no longer submit updates")
        else:
            self.log(f"already registered (stake {fmt_eth(info.stake)})")
            key_file = self._key_file()
            if key_file.exists():
                from ..sealing import public_key_of

                key = self._load_key(key_file)
                if public_key_of(key) == info.encryption_key:
                    self.client.registered_key = key
                elif params.private:
                    raise PartyError(f"{key_file} does not hold the key {self.address} registered with; private "
                                     "mode opens its shares with that key: pass --key-file with the right file")
            elif params.private:
                raise PartyError(f"{self.address} is registered, but its X25519 key is not in {key_file}: private "
                                 "mode needs it to open the shares dealt to it; pass --key-file with it")
        # Rounds this client already took part in whose reward may still be open (a restart continues from
        # here): views of its last few rounds, not a scan of the job's history. Older rounds were claimed
        # while this client waited (a claim is never more than one round behind a submission).
        last = fl.client(self.address).last_submitted_round
        self.submitted = {r for r in range(max(1, last - RECENT_ROUNDS + 1), last + 1)
                          if fl.update(r, self.address).status != UpdateStatus.NONE} if last else set()
        if self.submitted:
            self.log(f"already submitted to round(s) {', '.join(map(str, sorted(self.submitted)))} (found on chain); "
                     "never submitting to them again")

    def _key_file(self) -> Path:
        if self.opts.key_file:
            return Path(self.opts.key_file).expanduser()
        folder = self.job.cursor_file.parent if self.job.cursor_file is not None else Path(".")
        return folder / f"client-{self.address}.key"

    def _load_key(self, path: Path) -> bytes:
        from ..sealing import load_private_key

        return load_private_key(path)

    def _done(self, cur: int, phase: Any = None) -> bool:
        return round_closed(self.job.fl, self.opts.rounds, cur, phase)

    def run(self) -> str:
        if not (self.opts.rounds and self._done(self.job.fl.current_round())):
            self.warm_up()  # before registering: a registered client is one ready to train
        self._ensure_registered()
        def step() -> str | None:
            if not self._step():
                return None
            self._settle(final=True)
            return f"round {self.opts.rounds} is closed"

        why = run_until_done(step, self.stop, self.log, self.job.fl)
        if self.stop.requested:  # stopped by a signal: withdraw what was claimed before exiting
            try:
                self._settle(final=True)
            except (ChainError, *transient_errors()) as exc:
                self.log(f"could not withdraw before exiting ({exc}); the rewards stay owed to this account")
        return why

    def _step(self) -> bool:
        """One look at the chain: take part in the open round if we can, claim what is due; True when done."""
        fl = self.job.fl
        self._resend_dropped()
        if self._after_submit is not None:  # just submitted: wait from the view read before it
            head0, view = self._after_submit
            self._after_submit = None
        else:
            # One view: the current round and this client's part in it, as of `confirmations` blocks ago
            # (a round is acted on once its start has its confirmations).
            head0 = _head(fl)
            view = self._remember(fl.round_view(0, self.address, confirmed=True))
        cur = view.round_id
        info = view.round if cur else None
        if info is not None and info.phase == Phase.OPEN and cur in self.submitted and view.join.joined \
                and not view.join.revealed and cur not in self._reveal_tried:
            # Private mode, submitted before a restart: the reveal is still due (with the kept secrets).
            self._reveal_tried.add(cur)
            if cur in self.client._round_secrets or self.client.load_round_secrets(cur, view.join.round_key):
                self.log(f"round {cur}: submitted before a restart; revealing with the round secrets kept in "
                         f"{self.client.secrets_dir}")
                self._reveal(cur)
            else:
                self.log(f"round {cur}: submitted before a restart, and the round secrets were not kept: it "
                         "cannot reveal (the outcome will reject it: missing_reveal)")
        if info is not None and info.phase == Phase.OPEN and cur not in self.submitted and cur not in self.missed \
                and not (self.opts.rounds and cur > self.opts.rounds):
            self._take_part(cur, info, view)
            self._after_submit = (head0, view)  # the next step waits for a change without reading it again
            self._settle(view=view)  # earlier rounds' claims: after the submission, never before it
            return False
        self._settle(view=view)
        if self._done(cur, info.phase if info else None):
            return True
        state = (cur, info.phase if info else None)
        head = [head0]

        def changed() -> bool:
            now = _head(fl)
            if now == head[0]:
                return False  # no new block: nothing can have changed (no view read)
            head[0] = now
            if self._dropped():
                return True  # a reorg took a submission away: send it again
            v = self._remember(fl.round_view(0, self.address, confirmed=True))
            return (v.round_id, v.round.phase if v.round_id else None) != state

        if info is None or info.phase != Phase.OPEN or cur in self.submitted:
            what = f"round {cur} to close" if info is not None and info.phase == Phase.OPEN else "the next round"
            self.log(f"waiting for {what}")
        self.stop.wait_for(changed, math.inf, self.opts.poll, self.opts.max_poll)
        return False

    def _remember(self, view: Any) -> Any:
        """Keeps the view of a decided round (final but for this client's own claim and withdrawal), so
        that settling it reads no view again."""
        if view.round_id and view.round.phase not in (Phase.NONE, Phase.OPEN, Phase.PROPOSED):
            if view.round_id in self.submitted and view.round_id not in self.settled:
                self._decided[view.round_id] = (view, self._books)
            if self._newest_decided is None or view.round_id >= self._newest_decided.round_id:
                self._newest_decided = view  # where the next round's base model was published
        return view

    def _take_part(self, r: int, info: Any, view: Any) -> None:
        fl = self.job.fl
        u = view.update
        if u.status != UpdateStatus.NONE:
            self.submitted.add(r)
            self.log(f"round {r}: already submitted (commitment {short(u.commitment)}); not submitting again")
            return
        if chain_now() > info.deadline:
            self.missed.add(r)
            self.log(f"round {r}: its deadline has passed; taking part in the next round")
            return
        params = fl.params()  # the minimum stake is fixed; the aggregator key of the round comes with the view
        stake = view.client.stake
        if stake < params.minStake:
            if not self.opts.top_up:
                self.missed.add(r)
                self.log(f"round {r}: stake {fmt_eth(stake)} is below the minimum {fmt_eth(params.minStake)} after "
                         "a slash; restart with --top-up (or call topUp) to take part again")
                return
            fl.top_up(self.account, params.minStake - stake)
            self.log(f"topped the stake up by {fmt_eth(params.minStake - stake)}")
        self.job.prefetch_model(info.base_model_hash, self._newest_decided)  # with its locator (for IPFS)
        if params.private and not self._join(r, view):
            return
        self.log(f"round {r}: training on {len(self.client.x)} samples ({self.opts.epochs} epoch(s)) "
                 f"from model {short(info.base_model_hash)}")
        t0 = time.monotonic()
        gas0 = fl.meter.total
        try:
            res = self.client.participate(r, info, view)
        except ChainError as exc:
            if exc.error_name not in RACES:
                raise
            self.missed.add(r)
            self.log(f"round {r}: could not submit ({exc.error_name}: {exc}); taking part in the next round")
            return
        if res.skipped:
            self.log(f"round {r}: nothing submitted ({res.skipped})")
            if res.skipped == "already submitted":
                self.submitted.add(r)
            else:
                self.missed.add(r)
            return
        self.submitted.add(r)
        if fl.confirmations > 0:
            from ape import chain

            self.unconfirmed[r] = (res, chain.blocks.height)
        self.log(f"round {r}: submitted update {short(res.commitment)} ({res.samples} samples, train loss "
                 f"{res.train_loss:.4f}, gas {fl.meter.total - gas0:,}) in {time.monotonic() - t0:.1f} s")
        if params.private:
            self._reveal_tried.add(r)
            self._reveal(r)

    # ------------------------------------------------------------ private mode

    def _wait_round(self, r: int, done: Callable[[Any], bool], until: Callable[[Any], int]) -> Any:
        """Polls (head first) until `done(view)` or the round is no longer open; the last view, or None if stopped.

        A view is read when the head moved, or once the chain's time is past `until(view)` (a deadline
        passes without a block on a quiet chain)."""
        fl = self.job.fl
        last = [fl.round_view(r, self.address, confirmed=True)]
        head = [_head(fl)]

        def changed() -> bool:
            now = _head(fl)
            if now == head[0] and chain_now() <= until(last[0]):
                return False
            head[0] = now
            last[0] = fl.round_view(r, self.address, confirmed=True)
            return last[0].round.phase != Phase.OPEN or done(last[0])

        if last[0].round.phase != Phase.OPEN or done(last[0]):
            return last[0]
        self.stop.wait_for(changed, math.inf, self.opts.poll, self.opts.max_poll)
        return None if self.stop.requested else last[0]

    def _join(self, r: int, view: Any) -> bool:
        """Private mode: join the round (once), then wait until its participants are fixed. False: sit it out."""
        if view.join.joined and r not in self.client._round_secrets \
                and self.client.load_round_secrets(r, view.join.round_key):
            self.log(f"round {r}: joined before a restart; its round secrets are back from "
                     f"{self.client.secrets_dir}")
        if view.join.joined and r not in self.client._round_secrets:
            self.missed.add(r)
            self.log(f"round {r}: joined before a restart, and the round secrets were not kept: sitting it out "
                     "(the chain counts this client as dropped; the others recover its masks)")
            return False
        if not view.join.joined:
            if chain_now() > view.priv.join_deadline:
                self.missed.add(r)
                self.log(f"round {r}: its join deadline has passed; taking part in the next round")
                return False
            keys = self.registry.refresh()
            try:
                self.client.join_private(r, keys)
            except ChainError as exc:
                if exc.error_name not in (*RACES, "JoinClosed"):
                    raise
                self.missed.add(r)
                self.log(f"round {r}: could not join ({exc.error_name}); taking part in the next round")
                return False
            self.log(f"round {r}: joined (a fresh round key; its Shamir shares dealt to {len(keys) - 1} registered "
                     "client(s)); waiting for the participants to be fixed")
        fixed = self._wait_round(r, lambda v: v.priv.joined >= v.round.eligible or chain_now() > v.priv.join_deadline,
                                 lambda v: v.priv.join_deadline)
        if fixed is None or fixed.round.phase != Phase.OPEN:
            self.missed.add(r)
            return False
        return True

    def _reveal(self, r: int) -> None:
        """Private mode: once submissions are closed, reveal the self-mask seed and the shares of the dropped."""
        closed = self._wait_round(r, lambda v: v.round.submissions >= v.priv.joined
                                  or chain_now() > v.round.deadline, lambda v: v.round.deadline)
        if closed is None or closed.round.phase != Phase.OPEN:
            return
        try:
            if self.client.reveal_private(r):
                self.log(f"round {r}: revealed (own self-mask seed; shares of "
                         f"{closed.priv.joined - closed.round.submissions} dropped participant(s))")
                self.client.forget_round_secrets(r)
        except ChainError as exc:
            if exc.error_name not in (*RACES, "RevealClosed", "RevealNotOpen"):
                raise
            self.log(f"round {r}: could not reveal ({exc.error_name}: {exc})")

    def _dropped(self) -> list[int]:
        """Rounds whose submission is no longer on chain (a reorg dropped it); forgets confirmed ones."""
        if not self.unconfirmed:
            return []
        from ape import chain

        fl, head, out = self.job.fl, chain.blocks.height, []
        for r, (_, block) in list(self.unconfirmed.items()):
            if fl.update(r, self.address).status == UpdateStatus.NONE:
                out.append(r)
            elif head - block >= fl.confirmations:
                del self.unconfirmed[r]  # deep enough: final
        return out

    def _resend_dropped(self) -> None:
        """Sends again (same blob, same commitment) a submission a reorg dropped, while its round is open."""
        from ape import chain

        fl = self.job.fl
        for r in self._dropped():
            res, _ = self.unconfirmed.pop(r)
            info = fl.round(r)
            if info.phase != Phase.OPEN or chain_now() > info.deadline:
                self.log(f"round {r}: the submission {short(res.commitment)} was dropped by a reorg and the round "
                         "is closed now; nothing to send again")
                continue
            try:
                fl.submit(self.account, r, res.commitment, res.samples, res.locator)
            except ChainError as exc:
                if exc.error_name not in RACES:
                    raise
                self.log(f"round {r}: could not send the dropped submission again ({exc.error_name})")
                continue
            self.unconfirmed[r] = (res, chain.blocks.height)
            self.log(f"round {r}: the submission {short(res.commitment)} was dropped by a reorg; sent it again")

    def _settle(self, final: bool = False, view: Any = None) -> None:
        """Claims the rewards of every decided round this client was accepted in, in one transaction, and
        withdraws every --claim-every rounds (and at the end), so claims never sit between two submissions.

        `view`: the step's view of the current round (read before this client's own submission, if any):
        that round is settled from it, or skipped while it is undecided, without another view."""
        fl = self.job.fl
        due = []
        owed: int | None = None  # wei owed to this client, as the last view said
        settled_before = len(self.settled)
        for r in sorted(self.submitted - self.settled):
            if view is not None and view.round_id == r and view.round.phase in (Phase.OPEN, Phase.PROPOSED):
                continue  # not decided yet (no view read)
            if r in self._decided:  # seen decided by a step or a poll: no view read
                v, books = self._decided.pop(r)
                owed = v.owed if books == self._books else None
            else:
                v = fl.round_view(r, self.address)  # the round, this client's update and what it may claim
                owed = v.owed
            info = v.round
            phase = info.phase
            if phase in (Phase.OPEN, Phase.PROPOSED):  # not decided yet
                continue
            if phase == Phase.FINALIZED:
                per_round = fl.params().rewardPerRound
                if info.reward < per_round and not self.pool_warned:
                    self.pool_warned = True
                    self.log(f"WARNING: round {r} pays {fmt_eth(info.reward)} in all, not the {fmt_eth(per_round)} "
                             "a round promises: the job's reward pool ran dry (anyone can refill it with "
                             "fundRewards)")
                status = v.update.status
                if status == UpdateStatus.SUBMITTED and v.claimable > 0:
                    due.append(r)
                elif status in (UpdateStatus.REJECTED, UpdateStatus.EXCLUDED):
                    self.log(f"round {r}: the update was {status.name.lower()}; no reward")
            self.settled.add(r)
        if due:
            try:
                got = fl.claim_many(self.account, due)
            except ChainError as exc:
                if exc.error_name != "NothingToClaim":
                    raise
                got = {r: fl.claim(self.account, r) for r in due if fl.claimable(r, self.address) > 0}
            self._books += 1
            if owed is not None:
                owed += sum(got.values())
            for r, amount in got.items():
                self.log(f"round {r}: claimed {fmt_eth(amount)}")
            if len(got) > 1:
                self.log(f"claimed {len(got)} rounds in one transaction")
        every = max(1, self.opts.claim_every)
        if not final and not self.stop.requested and (len(self.settled) == settled_before
                                                      or len(self.settled) % every):
            return  # withdraw later: every --claim-every rounds settled, and at exit
        if (owed if owed is not None else fl.owed(self.address)) > 0:
            try:
                amount = fl.withdraw_rewards(self.account)
            except ChainError as exc:
                if exc.error_name != "NothingOwed":
                    raise
            else:
                self.received += amount
                self._books += 1
                self.log(f"withdrew {fmt_eth(amount)} of rewards")
