"""The DP and private-mode rules deploy and federated_round share, in the words each one's user typed."""
from __future__ import annotations

import pytest

from ml.parties.deploy import make_deploy_config
from ml.parties.lifecycle import PartyError
from ml.privacy_rules import key, option, problem

FINE = dict(strategy="fedavg", privacy="robust", dp_clip=0.0, dp_noise=0.0, dp_delta=0.0, dp_budget=0.0,
            secagg_clip=4.0)


def _problem(spell=option, **kw):
    return problem(**{**FINE, **kw}, spell=spell)


def test_settings_that_fit():
    assert _problem() is None
    assert _problem(dp_clip=1.0, dp_noise=1.0, dp_delta=1e-5, dp_budget=10.0) is None
    assert _problem(privacy="secagg", dp_clip=1.0, dp_noise=2.0) is None  # distributed DP
    assert _problem(strategy="median") is None  # robust mode without DP: any strategy


@pytest.mark.parametrize("kw, message", [
    (dict(privacy="he"), "--privacy must be robust or secagg, got 'he'"),
    (dict(dp_clip=1.0, dp_noise=-1.0), "--dp-clip, --dp-noise, --dp-delta and --dp-budget must be >= 0"),
    (dict(dp_noise=1.0), "--dp-noise, --dp-delta and --dp-budget need --dp-clip C (the norm each update's change is "
                         "clipped to)"),
    (dict(dp_clip=1.0, strategy="krum"), "differential privacy clips and averages every accepted update (DP-FedAvg); "
                                         "--strategy krum is not a mean. Use --strategy fedavg (with --mu for "
                                         "FedProx)"),
    (dict(dp_clip=1.0, dp_delta=1.0), "--dp-delta must be below 1 (0 = 1/N for the job's N training samples)"),
    (dict(dp_clip=1.0, dp_budget=5.0), "--dp-budget needs --dp-noise above 0: without noise epsilon is infinite"),
    (dict(privacy="secagg", strategy="median"), "--privacy secagg sums masked updates, so only FedAvg (and FedProx, "
                                                "--mu) can run on them; --strategy median needs each update in the "
                                                "clear (use robust mode)"),
    (dict(privacy="secagg", dp_clip=5.0), "--secagg-clip (4) bounds each coordinate and must be at least --dp-clip "
                                          "(5), the L2 bound the clients clip to"),
])
def test_each_rule_in_command_line_words(kw, message):
    assert _problem(**kw) == message


def test_job_yaml_words_and_deploy_uses_them():
    assert _problem(key, dp_clip=1.0, strategy="trimmed_mean") == (
        "differential privacy clips and averages every accepted update (DP-FedAvg); strategy trimmed_mean is not a "
        "mean. Use strategy fedavg (with each client's --mu for FedProx)")
    assert _problem(key, privacy="secagg", dp_clip=5.0, secagg_clip=2.0).startswith(
        "secagg_clip (2) bounds each coordinate and must be at least dp_clip (5)")
    with pytest.raises(PartyError, match=r"^dp_budget needs dp_noise above 0"):
        make_deploy_config({"dp_clip": 1.0, "dp_budget": 3.0}).check()
    with pytest.raises(PartyError, match=r"^privacy secagg sums masked updates"):
        make_deploy_config({"privacy": "secagg", "strategy": "median"}).check()
    make_deploy_config({"privacy": "secagg", "dp_clip": 1.0, "dp_noise": 1.0}).check()
