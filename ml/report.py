"""Everything a run shows and saves: rich tables, report.json, rounds.csv, accuracy.png."""
from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .chain import WEI


@dataclass
class RoundRow:
    round_id: int
    status: str
    clients: int
    accepted: int
    excluded: int
    rejected: int
    accuracy: float
    loss: float
    gas: int
    seconds: float
    model_hash: str
    submitted: int = 0  # chosen clients that actually submitted (a slashed one may not be able to)
    rejected_reasons: dict[str, str] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)
    committee: str = ""  # "trusted" (no committee), else "<attestations>/<threshold> attested, <n> disputed"
    attestations: int = 0
    disputes: int = 0
    note: str = ""  # why a round failed (disputed proposal, below the quorum), a rogue party's act
    view_calls: int = 0  # eth_call made during the round by every party of the run (FLContract._view)
    epsilon: float | None = None  # a DP job's cumulative epsilon after this round (None: no DP)
    noise_std: float = float("nan")  # DP noise per coordinate on the mean, z*C/n
    clipped: int = 0  # accepted updates scaled down to the clipping norm


def _eps(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def round_table(rows: list[RoundRow], title: str = "Rounds") -> Table:
    t = Table(title=title, title_justify="left")
    dp = any(r.epsilon is not None for r in rows)
    for col, just in (("round", "right"), ("status", "left"), ("chosen", "right"), ("submitted", "right"),
                      ("accepted", "right"),
                      ("excluded", "right"), ("rejected", "right"), ("accuracy", "right"), ("loss", "right"),
                      *((("epsilon", "right"),) if dp else ()),
                      ("committee", "left"), ("gas", "right"), ("seconds", "right")):
        t.add_column(col, justify=just)
    for r in rows:
        t.add_row(
            str(r.round_id), r.status, str(r.clients), str(r.submitted), str(r.accepted), str(r.excluded), str(r.rejected),
            "-" if r.accuracy != r.accuracy else f"{r.accuracy:.4f}",
            "-" if r.loss != r.loss else f"{r.loss:.4f}",
            *((_eps(r.epsilon),) if dp else ()),
            r.committee or "-", f"{r.gas:,}", f"{r.seconds:.2f}",
        )
    return t


def write_rounds_csv(path: Path, rows: list[RoundRow]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["round", "status", "chosen", "submitted", "accepted", "excluded", "rejected", "accuracy", "loss", "gas",
                    "seconds", "model_hash", "committee", "attestations", "disputes", "view_calls", "epsilon",
                    "noise_std", "clipped"])
        for r in rows:
            w.writerow([r.round_id, r.status, r.clients, r.submitted, r.accepted, r.excluded, r.rejected,
                        f"{r.accuracy:.6f}", f"{r.loss:.6f}", r.gas, f"{r.seconds:.3f}", r.model_hash,
                        r.committee, r.attestations, r.disputes, r.view_calls,
                        "" if r.epsilon is None else f"{r.epsilon:.6g}",
                        "" if r.noise_std != r.noise_std else f"{r.noise_std:.6g}", r.clipped])


def write_json(path: Path, data: Any) -> None:
    def default(o: Any) -> Any:
        if isinstance(o, (bytes, bytearray)):
            return "0x" + bytes(o).hex()
        if isinstance(o, Path):
            return str(o)
        if hasattr(o, "__dataclass_fields__"):
            return asdict(o)
        if hasattr(o, "item"):
            return o.item()
        raise TypeError(f"cannot serialise {type(o).__name__}")

    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=default, allow_nan=True))
    tmp.replace(path)


def _accuracy_plot(path: Path, xs: list[float], accuracies: list[float], *, xlabel: str, label: str,
                   baseline: float | None, baseline_label: str, title: str, integer_x: bool = False) -> None:
    # The object API draws without pyplot, so no global backend is switched
    # (a notebook keeps its inline plots).
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6.4, 4.0), dpi=120)
    ax = fig.subplots()
    ax.plot(xs, accuracies, marker="o", label=label)
    if baseline is not None:
        ax.axhline(baseline, color="tab:red", linestyle="--", label=f"{baseline_label} ({baseline:.3f})")
    ax.set_xlabel(xlabel)
    if integer_x:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)


def plot_accuracy(path: Path, rows: list[RoundRow], baseline: float | None, title: str) -> None:
    done = [r for r in rows if r.status == "finalized"]
    _accuracy_plot(path, [r.round_id for r in done], [r.accuracy for r in done], xlabel="round",
                   label="federated (global model)", baseline=baseline, baseline_label="centralized baseline",
                   title=title, integer_x=True)


def plot_accuracy_epsilon(path: Path, rows: list[RoundRow], baseline: float | None, title: str,
                          mechanism: str = "central DP") -> None:
    """Test accuracy of each finalized DP round against the cumulative epsilon spent by then; ``mechanism``
    names the DP kind in the legend (central DP in robust mode, distributed DP in private mode)."""
    done = [r for r in rows if r.status == "finalized" and r.epsilon is not None]
    _accuracy_plot(path, [r.epsilon for r in done], [r.accuracy for r in done], xlabel="cumulative epsilon",
                   label=f"federated, {mechanism}", baseline=baseline, baseline_label="centralized, no DP",
                   title=title)


def clients_table(rows: list[dict[str, Any]]) -> Table:
    t = Table(title="Clients", title_justify="left")
    for col in ("client", "role", "samples", "accepted", "excluded", "rejected", "reward (ETH)", "slashed (ETH)",
                "stake (ETH)"):
        t.add_column(col, justify="left" if col in ("client", "role") else "right")
    for r in rows:
        t.add_row(r["address"][:10] + "…", r["role"], str(r["samples"]), str(r["accepted"]), str(r["excluded"]),
                  str(r["rejected"]), f"{r['reward'] / WEI:.6f}", f"{r['slashed'] / WEI:.6f}",
                  f"{r['stake'] / WEI:.4f}")
    return t


def timing_table(seconds: dict[str, float], wall: float) -> Table:
    t = Table(title="Where the time went", title_justify="left")
    t.add_column("phase")
    t.add_column("seconds", justify="right")
    t.add_column("share", justify="right")
    for k, v in seconds.items():
        t.add_row(k, f"{v:.2f}", f"{100 * v / wall:.1f}%" if wall > 0 else "-")
    t.add_row("total (wall)", f"{wall:.2f}", "100%")
    return t


def console() -> Console:
    """A console that does not squeeze tables when the output is a file or a pipe."""
    import sys

    return Console(highlight=False, width=None if sys.stdout.isatty() else 140)
