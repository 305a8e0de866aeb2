"""Which differential-privacy and private-mode settings go together: one rule set for every entry point.

``ape run deploy`` (its job.yaml keys, ``dp_clip``) and ``ape run federated_round`` (its options,
``--dp-clip``) check the same rules before anything touches a chain; each passes how it spells a setting,
so the message names what the user typed. Ranges the libraries check themselves (SecAggParams, the
accountant's budget against one round's epsilon) stay there.
"""
from __future__ import annotations

from collections.abc import Callable

PRIVACY_MODES = ("robust", "secagg")
MEAN_STRATEGIES = ("fedavg",)  # FedProx is FedAvg with --mu: the same mean


def problem(*, strategy: str, privacy: str, dp_clip: float, dp_noise: float, dp_delta: float, dp_budget: float,
            secagg_clip: float, spell: Callable[[str], str]) -> str | None:
    """The first rule the settings break, as one line naming them with ``spell(setting)``; None if they fit."""
    s = spell
    if privacy not in PRIVACY_MODES:
        return f"{s('privacy')} must be robust or secagg, got {privacy!r}"
    if min(dp_clip, dp_noise, dp_delta, dp_budget) < 0:
        return f"{s('dp_clip')}, {s('dp_noise')}, {s('dp_delta')} and {s('dp_budget')} must be >= 0"
    if not dp_clip and (dp_noise or dp_delta or dp_budget):
        return (f"{s('dp_noise')}, {s('dp_delta')} and {s('dp_budget')} need {s('dp_clip')} C (the norm each "
                "update's change is clipped to)")
    if dp_clip and strategy not in MEAN_STRATEGIES:
        return (f"differential privacy clips and averages every accepted update (DP-FedAvg); {s('strategy')} "
                f"{strategy} is not a mean. Use {s('strategy')} fedavg (with {s('mu')} for FedProx)")
    if dp_delta >= 1:
        return f"{s('dp_delta')} must be below 1 (0 = 1/N for the job's N training samples)"
    if dp_budget and not dp_noise:
        return f"{s('dp_budget')} needs {s('dp_noise')} above 0: without noise epsilon is infinite"
    if privacy == "secagg":
        if strategy not in MEAN_STRATEGIES:
            return (f"{s('privacy')} secagg sums masked updates, so only FedAvg (and FedProx, {s('mu')}) can run "
                    f"on them; {s('strategy')} {strategy} needs each update in the clear (use robust mode)")
        if dp_clip and secagg_clip < dp_clip:
            return (f"{s('secagg_clip')} ({secagg_clip:g}) bounds each coordinate and must be at least "
                    f"{s('dp_clip')} ({dp_clip:g}), the L2 bound the clients clip to")
    return None


def option(setting: str) -> str:
    """How a command line spells a setting: dp_clip -> --dp-clip."""
    return "--" + setting.replace("_", "-")


def key(setting: str) -> str:
    """How job.yaml spells a setting: dp_clip, as it is. FedProx's mu is no job setting: each client's --mu."""
    return "each client's --mu" if setting == "mu" else setting
