"""Split a labelled dataset across simulated clients.

Three schemes, all fixed by the seed:

* ``iid``: a random permutation cut into equal parts.
* ``dirichlet``: for each class, client shares drawn from Dir(alpha); small
  alpha gives each client few classes (Hsu et al. 2019). Clients that already
  hold their fair share get no more of the next class (the balancing used by
  NIID-Bench, Li et al. 2021), and the draw is repeated until every client
  has ``min_samples``.
* ``shards``: McMahan et al. (2017)'s pathological split: sort by label, cut
  into ``num_clients * shards_per_client`` shards, deal each client
  ``shards_per_client`` of them.

The result is a list of sorted index arrays, disjoint and covering every sample.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SCHEMES = ("iid", "dirichlet", "shards")
MAX_DIRICHLET_TRIES = 1000


class PartitionError(ValueError):
    """The requested split is invalid or impossible; the message says what to change."""


def partition(
    labels: np.ndarray,
    num_clients: int,
    scheme: str = "iid",
    *,
    alpha: float = 0.5,
    shards_per_client: int = 2,
    min_samples: int = 10,
    seed: int = 0,
) -> list[np.ndarray]:
    """Sorted int64 index arrays, one per client; every client gets >= ``min_samples``."""
    labels = _check_labels(labels)
    n = len(labels)
    if not isinstance(num_clients, int | np.integer) or num_clients < 1:
        raise PartitionError(f"num_clients must be a positive integer, got {num_clients!r}")
    if not isinstance(min_samples, int | np.integer) or min_samples < 0:
        raise PartitionError(f"min_samples must be a non-negative integer, got {min_samples!r}")
    if scheme not in SCHEMES:
        raise PartitionError(f"unknown partition scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    if n < num_clients * max(min_samples, 1):
        raise PartitionError(
            f"{n} samples cannot give {num_clients} clients at least {max(min_samples, 1)} each; "
            "use fewer clients or a smaller min_samples"
        )
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**32:
        raise PartitionError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    rng = np.random.RandomState(seed)
    if scheme == "iid":
        parts = np.array_split(rng.permutation(n), num_clients)
    elif scheme == "dirichlet":
        parts = _dirichlet(labels, num_clients, alpha, min_samples, rng)
    else:
        parts = _shards(labels, num_clients, shards_per_client, rng)
    parts = [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    smallest = min(len(p) for p in parts)
    if smallest < min_samples:
        raise PartitionError(
            f"scheme {scheme!r} gave a client only {smallest} samples (< min_samples={min_samples}); "
            "use fewer clients or shards, or lower min_samples"
        )
    return parts


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) == 0:
        raise PartitionError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise PartitionError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if labels.min() < 0:
        raise PartitionError("labels must be non-negative class indices")
    return labels


def _dirichlet(
    labels: np.ndarray, num_clients: int, alpha: float, min_samples: int, rng: np.random.RandomState
) -> list[np.ndarray]:
    if not (isinstance(alpha, numbers.Real) and alpha > 0 and np.isfinite(alpha)):
        raise PartitionError(f"alpha must be a positive number, got {alpha!r}")
    n = len(labels)
    fair = n / num_clients
    classes = np.unique(labels)
    best = 0
    for _ in range(MAX_DIRICHLET_TRIES):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        sizes = np.zeros(num_clients, dtype=np.int64)
        for cls in classes:
            idx = np.flatnonzero(labels == cls)
            idx = idx[rng.permutation(len(idx))]
            with np.errstate(invalid="ignore", divide="ignore"):
                p = rng.dirichlet(np.full(num_clients, float(alpha)))
            if not np.isfinite(p).all():  # tiny alpha: the legacy sampler can return NaN
                break
            p = p * (sizes < fair)  # clients at their fair share take no more
            total = p.sum()
            if total <= 0:  # all the drawn mass fell on full clients: draw again
                break
            cuts = (np.cumsum(p / total) * len(idx)).astype(np.int64)[:-1]
            for client, chunk in enumerate(np.split(idx, cuts)):
                parts[client].append(chunk)
                sizes[client] += len(chunk)
        else:
            if sizes.min() >= min_samples:
                return [np.concatenate(p) for p in parts]
        best = max(best, int(sizes.min()))
    raise PartitionError(
        f"dirichlet(alpha={alpha}) could not give all {num_clients} clients {min_samples} samples "
        f"in {MAX_DIRICHLET_TRIES} draws (best smallest client: {best}); "
        "raise alpha, lower min_samples or use fewer clients"
    )


def _shards(
    labels: np.ndarray, num_clients: int, shards_per_client: int, rng: np.random.RandomState
) -> list[np.ndarray]:
    if not isinstance(shards_per_client, int | np.integer) or shards_per_client < 1:
        raise PartitionError(f"shards_per_client must be a positive integer, got {shards_per_client!r}")
    num_shards = num_clients * shards_per_client
    if num_shards > len(labels):
        raise PartitionError(
            f"{len(labels)} samples cannot be cut into {num_shards} shards "
            f"({num_clients} clients x {shards_per_client}); use fewer clients or shards"
        )
    # Shuffle first so ties within a label are broken by the seed, then sort by label.
    perm = rng.permutation(len(labels))
    by_label = perm[np.argsort(labels[perm], kind="stable")]
    shards = np.array_split(by_label, num_shards)
    order = rng.permutation(num_shards)
    return [
        np.concatenate([shards[s] for s in order[c * shards_per_client : (c + 1) * shards_per_client]])
        for c in range(num_clients)
    ]


# --------------------------------------------------------------------------- summary


@dataclass
class PartitionSummary:
    """Who holds what: sizes, label histograms and how far each client is from IID."""

    num_classes: int
    samples: list[int]
    histograms: list[list[int]]  # [client][class] -> count
    tv_distance: list[float]  # per client, from the global label distribution
    non_iid: float  # mean total-variation distance; 0 = IID, 1 = disjoint labels
    global_distribution: list[float] = field(default_factory=list)

    @property
    def num_clients(self) -> int:
        return len(self.samples)

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_clients": self.num_clients,
            "num_classes": self.num_classes,
            "samples": list(self.samples),
            "histograms": [list(h) for h in self.histograms],
            "tv_distance": list(self.tv_distance),
            "non_iid": self.non_iid,
            "global_distribution": list(self.global_distribution),
        }

    def to_rich_table(self, title: str | None = None):
        """A rich Table: one row per client, one column per class."""
        from rich.table import Table

        table = Table(
            title=title or f"Partition: {self.num_clients} clients, non-IID (mean TV) = {self.non_iid:.3f}"
        )
        table.add_column("client", justify="right")
        table.add_column("samples", justify="right")
        for k in range(self.num_classes):
            table.add_column(str(k), justify="right")
        table.add_column("TV", justify="right")
        for i, (n, hist, tv) in enumerate(zip(self.samples, self.histograms, self.tv_distance)):
            table.add_row(str(i), str(n), *[str(c) if c else "." for c in hist], f"{tv:.3f}")
        return table


def summarize(labels: np.ndarray, parts: list[np.ndarray], num_classes: int) -> PartitionSummary:
    """Label histogram per client and the mean total-variation distance to the global mix."""
    labels = _check_labels(labels)
    if labels.max() >= num_classes:
        raise PartitionError(f"labels go up to {labels.max()} but num_classes={num_classes}")
    if not parts:
        raise PartitionError("parts is empty: nothing to summarize")
    hist = np.stack([np.bincount(labels[np.asarray(p, dtype=np.int64)], minlength=num_classes) for p in parts])
    total = hist.sum(axis=0)
    global_p = total / max(total.sum(), 1)
    sizes = hist.sum(axis=1)
    local_p = hist / np.maximum(sizes, 1)[:, None]
    tv = 0.5 * np.abs(local_p - global_p).sum(axis=1)
    return PartitionSummary(
        num_classes=num_classes,
        samples=[int(s) for s in sizes],
        histograms=hist.astype(int).tolist(),
        tv_distance=[float(t) for t in tv],
        non_iid=float(tv.mean()),
        global_distribution=[float(p) for p in global_p],
    )
