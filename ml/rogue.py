"""Simulated malicious aggregators and verifiers, for tests, demos and the README's attacks.

Like :mod:`ml.attacks` for clients, each behaviour is a small pure function:
a rogue aggregator takes the honest :class:`~ml.rounds.RoundComputation` and
returns the one it would like to propose; a rogue verifier's vote ignores the
computation. The committee's job is to make every one of them fail.
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
from eth_utils import keccak, to_checksum_address

from .aggregation import AggregateResult
from .models import ModelSpec
from .rounds import Rejection, RoundComputation, aggregate_updates

ROGUE_AGGREGATOR_MODES = ("slash_honest", "wrong_model", "exclude_honest", "grind_noise")
"""slash_honest: reject (and slash) an honest client with a made-up NaN claim and a forged key;
wrong_model: propose a model the updates do not give (steering it); exclude_honest: leave an
honest client out of a FedAvg round (it is neither paid nor counted); grind_noise (a DP job):
draw the noise from a seed of its choosing rather than the committed one (steering the model
through the noise, e.g. the best of many draws)."""
ROGUE_VERIFIER_MODES = ("dispute_all", "attest_all")
"""dispute_all: disputes every proposal (a verifier trying to block honest rounds);
attest_all: attests whatever is proposed without checking (a verifier colluding with the aggregator)."""
STEER = 0.5  # wrong_model: added to every weight of the honest aggregate


class UnknownRogueModeError(ValueError):
    pass


def check_rogue_aggregator(mode: str) -> str:
    if mode not in ROGUE_AGGREGATOR_MODES:
        raise UnknownRogueModeError(f"unknown --rogue-aggregator {mode!r}; choose one of: "
                                    f"{', '.join(ROGUE_AGGREGATOR_MODES)}")
    return mode


def check_rogue_verifier(mode: str) -> str:
    if mode not in ROGUE_VERIFIER_MODES:
        raise UnknownRogueModeError(f"unknown --rogue-verifier {mode!r}; choose one of: "
                                    f"{', '.join(ROGUE_VERIFIER_MODES)}")
    return mode


def parse_rogue_rounds(text: str) -> tuple[int, ...] | None:
    """--rogue-rounds: ``all`` (None: every round) or round numbers separated by commas (``1,3``)."""
    text = str(text).strip().lower()
    if text == "all":
        return None
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UnknownRogueModeError(f"{text!r}: write round numbers separated by commas (1,3) "
                                    "or 'all'") from None


def forged_key(client: str) -> bytes:
    """A content key that is not the client's (anyone re-checking the evidence finds it forged)."""
    return keccak(b"rogue aggregator: forged content key for " + client.lower().encode())


def victim_of(comp: RoundComputation) -> str | None:
    """The honest client a rogue aggregator picks on: the first accepted one (None if nobody was)."""
    return comp.accepted[0] if comp.accepted else None


def rogue_computation(mode: str, comp: RoundComputation, spec: ModelSpec, strategy: str,
                      strategy_params: dict[str, Any] | None = None) -> tuple[RoundComputation, str]:
    """What a rogue aggregator proposes instead of ``comp``, and one line saying what it did.

    ``comp`` is left as it is. With nobody accepted there is no honest client to pick on and
    the computation is returned unchanged (the line says so).
    """
    check_rogue_aggregator(mode)
    victim = victim_of(comp)
    if victim is None:
        return comp, f"{mode}: no accepted update to tamper with; proposing the honest outcome"
    rogue = copy.copy(comp)
    rogue.valid = list(comp.valid)
    rogue.rejected = list(comp.rejected)
    if mode == "grind_noise":
        if comp.dp is None or comp.dp.seed is None:
            return comp, "grind_noise: the job has no DP noise to grind; proposing the honest outcome"
        from dataclasses import replace

        rogue.dp = replace(comp.dp, seed=keccak(b"rogue aggregator: a noise seed it picked" + comp.dp.seed))
        aggregate_updates(rogue, spec, strategy, strategy_params)
        return rogue, "grind_noise: draws the DP noise from a seed it picked, not the committed one"
    if mode == "wrong_model":
        weights = [(w + np.float32(STEER)).astype(np.float32) for w in comp.result.weights]
        rogue.result = AggregateResult(weights=weights, included=list(comp.result.included),
                                       excluded=list(comp.result.excluded))
        from . import codec
        from .models import tensor_names

        rogue.model_blob = codec.encode(weights, tensor_names(spec))
        return rogue, f"wrong_model: proposes the honest aggregate shifted by {STEER} (another model hash)"
    rogue.valid = [u for u in comp.valid if to_checksum_address(u.key) != victim]
    if mode == "slash_honest":
        rogue.rejected.append(Rejection(victim, "non_finite", "weights contain NaN or Inf", forged_key(victim)))
        aggregate_updates(rogue, spec, strategy, strategy_params)
        return rogue, f"slash_honest: rejects honest client {victim} as non_finite with a forged key"
    aggregate_updates(rogue, spec, strategy, strategy_params)  # exclude_honest
    if rogue.result is not None:
        rogue.result = AggregateResult(weights=rogue.result.weights, included=rogue.result.included,
                                       excluded=[*rogue.result.excluded, victim])
    return rogue, f"exclude_honest: leaves honest client {victim} out of the model (not paid)"
