"""What the end-to-end tests share: one in-process federation run, and reading its job back as a user would."""
from __future__ import annotations

import json
from typing import Any

from ml.chain import FLContract
from ml.models import ModelSpec
from ml.parties.federation import Federation, FederationConfig
from ml.store import LocalStore
from ml.verify import verify_round


def federate(tmp_path, defaults: dict[str, Any] | None = None, name: str = "out", **kw: Any):
    """A federated_round run with small defaults (3 clients, 1 round, no baseline), ``defaults`` and ``kw`` on
    top. workers=1: training in this process (a worker pool's start-up would dominate such short runs)."""
    cfg = dict(clients=3, rounds=1, out=tmp_path / name, quiet=True, baseline=False, seed=1, workers=1)
    cfg.update(defaults or {})
    cfg.update(kw)
    return Federation(FederationConfig(**cfg)).run()


def open_job(res) -> tuple[FLContract, LocalStore, ModelSpec]:
    """The run's contract, store and model spec, from its deployments file."""
    dep = next(iter(json.loads((res.out / "deployments.json").read_text()).values()))
    spec = ModelSpec.from_json(json.dumps(dep["model_spec"]))
    return FLContract.at(res.address), LocalStore(res.out / "store"), spec


def verify(res, round_id: int, key: bytes | None = None):
    """verify_round on one round of the run (no key: the public checks only, and private mode's re-computation)."""
    fl, store, spec = open_job(res)
    return verify_round(fl, store, spec, round_id, chain_id=res.chain_id, strategy="fedavg", private_key=key)


def check(rep, name: str):
    """The check called ``name`` in a verify_round report."""
    return next(c for c in rep.checks if c.name == name)
