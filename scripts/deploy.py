"""ape run deploy: deploy a federated-learning job and record it for the other parties."""
from pathlib import Path

import click
from ape.cli import ConnectedProviderCommand, account_option

from ml.parties import DEFAULT_DEPLOYMENTS, DEFAULT_KEY_FILE, DEFAULT_STORE, STRATEGIES, Log, user_errors


@click.command(cls=ConnectedProviderCommand, short_help="Deploy a federated-learning job")
@account_option()
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML or JSON file of job settings (keys as these options, e.g. min_stake: 0.1); "
                   "options given on the command line win")
@click.option("--min-stake", help="Stake a client must lock, in ETH or with a unit (0.1, '100 gwei') [0.1]")
@click.option("--unbonding", help="Seconds (or 30m, 1h, 2d) between requestExit and withdrawing the stake [1h]")
@click.option("--submission-period", help="How long a round accepts updates (600, 10m) [10m]")
@click.option("--grace", help="Time after a deadline in which only the aggregator may close a round; then anyone "
                             "may cancel it (at least 1 s) [10m]")
@click.option("--quorum", type=int, help="Accepted updates a round needs for a new model; below it the round fails "
                                         "and its bad updates are slashed all the same [1]")
@click.option("--cap", type=int, help="Maximum updates per round, at most 1000 (0 = 1000). In an open job the first "
                                      "submitters fill it, Sybils included: use --permissioned to close that [0]")
@click.option("--max-samples", type=int, help="Cap on the sample count (FedAvg weight) of one update. In an open job "
                                              "a client may claim up to it whatever data it has [100000]")
@click.option("--treasury", help="Address that receives slashed stake; the zero address burns it (never the reward "
                                 "pool) [0x0000000000000000000000000000000000000000]")
@click.option("--permissioned", is_flag=True, default=None,
              help="Only clients a registrar admits may register, each with a sample allowance "
                   "(`ape run admit`); the deploying admin is the registrar")
@click.option("--admin-delay", help="Delay before a newly nominated admin can accept the role (two-step transfer) [1d]")
@click.option("--slash-bps", type=int, help="Share of the stake a rejected update loses, basis points [5000]")
@click.option("--reward", help="Reward of a finalized round, in ETH [0.01]")
@click.option("--fund", help="ETH to put in the reward pool now [0]")
@click.option("--norm-bound", type=float, help="Published L2 bound of an update's change, 0 = none [0]")
@click.option("--dp-clip", type=float, help="Differential privacy (central): clip each accepted update's change to "
                                         "this L2 norm C and average them uniformly; 0 = no DP [0]")
@click.option("--dp-noise", type=float, help="DP noise multiplier z: Gaussian noise of std z*C/n on the mean of n "
                                          "updates, from a seed sealed to the committee [0]")
@click.option("--dp-delta", type=float, help="DP target delta [1/N for the dataset's N training samples]")
@click.option("--dp-budget", type=float, help="Epsilon budget: the contract starts no round that would exceed it "
                                           "(dp-accounting, RDP); 0 = none [0]")
@click.option("--privacy", type=click.Choice(["robust", "secagg"]),
              help="robust: updates sealed to the aggregator and committee; secagg: private mode (secure "
                   "aggregation: masked updates, public, re-computable by anyone; FedAvg only) [robust]")
@click.option("--secagg-threshold", type=int, help="secagg: t, shares that rebuild a dropped participant's key [2]")
@click.option("--secagg-clip", type=float, help="secagg: bound of each coordinate of an update's change [4.0]")
@click.option("--secagg-scale-bits", type=int, help="secagg: fixed-point precision, 2**-bits per sample [20]")
@click.option("--secagg-ring-bits", type=click.Choice(["16", "32", "64"]),
              help="secagg: masked vectors mod 2**bits [64]")
@click.option("--join-period", help="secagg: time after a round starts in which clients join (300, 5m) [5m]")
@click.option("--reveal-period", help="secagg: time after the deadline in which survivors reveal (300, 5m) [5m]")
@click.option("--dataset", help="Dataset the model is sized for: digits, mnist, or a .npz/.csv file [digits]")
@click.option("--data-path", help="Path of mnist.npz or of a .npz/.csv dataset")
@click.option("--arch", type=click.Choice(["mlp", "cnn"]), help="Model architecture [mlp]")
@click.option("--seed", type=int, help="Seed of the initial model [0]")
@click.option("--strategy", type=click.Choice(STRATEGIES),
              help="Aggregation strategy, recorded for verify_round [fedavg]")
@click.option("--trim-beta", type=float, help="trimmed_mean: fraction trimmed at each end [0.2]")
@click.option("--krum-f", type=int, help="krum/multi_krum: Byzantine clients tolerated [1]")
@click.option("--verifier", "verifier", multiple=True,
              help="A committee member as ADDRESS:KEY (its account and X25519 public key, which `ape run verifier "
                   "--show-key` prints); repeat for each. None = trusted-aggregator mode (for demos)")
@click.option("--threshold", type=int, help="m: matching attestations that apply a proposal [majority of verifiers]")
@click.option("--attestation-period", help="Time the committee has to decide on a proposal (600, 10m) [10m]")
@click.option("--aggregator-bond", help="ETH the aggregator bonds to propose; a disputed proposal forfeits it [0.1]")
@click.option("--aggregator", "aggregator_address", help="Address given the aggregator role [the deploying account]")
@click.option("--aggregator-key-file", type=click.Path(dir_okay=False, path_type=Path),
              help=f"The aggregator's sealing key: used if the file exists, generated into it (mode 0600) if not "
                   f"[{DEFAULT_KEY_FILE}]")
@click.option("--store", default=DEFAULT_STORE, show_default=True,
              help="Update store for the initial model: a folder or an IPFS API URL (recorded as the default)")
@click.option("--deployments", type=click.Path(dir_okay=False, path_type=Path), default=Path(DEFAULT_DEPLOYMENTS),
              show_default=True, help="Deployments file; the job is recorded under the network's name")
@click.option("--replace", is_flag=True, help="Deploy even if the deployments file has a live job on this network")
def cli(account, config_file, aggregator_address, aggregator_key_file, store, deployments, replace, **options):
    """Deploy the FederatedLearning contract with the job's parameters, the initial model and the
    aggregator's sealing key, and record the job in the deployments file that `ape run aggregator`,
    `ape run client` and `ape run verify_round` read."""
    from ape.logging import logger

    from ml.parties import deploy_job, fmt_eth, make_deploy_config, prepare_account, read_config_file

    logger.set_level("WARNING")
    log = Log("deploy")
    try:
        prepare_account(account, log)
        cfg = make_deploy_config(read_config_file(config_file) if config_file else {}, options)
        res = deploy_job(account, cfg, aggregator=aggregator_address, key_file=aggregator_key_file, store=store,
                         deployments=deployments, replace=replace, log=log)
    except user_errors() as exc:
        raise click.ClickException(str(exc)) from None
    dep = res.deployment
    p = dep.params
    if res.replaced:
        click.echo(f"Replaced the record of the job at {res.replaced}.")
    rows = [
        ("contract", f"{dep.address} on {dep.network} (chain {dep.chain_id}, block {dep.block})"),
        ("admin / aggregator", f"{dep.admin} / {dep.aggregator}"),
        ("access", "permissioned: clients need `ape run admit` by the registrar (the admin)" if p["permissioned"]
                   else "open: anyone with the stake may register"),
        ("treasury", f"{p['treasury']}" + (" (slashed stake is burned)" if int(p["treasury"], 16) == 0 else
                                           " receives slashed stake")),
        ("model", f"{dep.extra['arch']} for {dep.extra['dataset']}, {dep.extra['num_params']:,} parameters, "
                  f"spec hash {dep.extra['model_spec_hash']}"),
        ("initial model", f"{p['initialModelHash']} (seed {dep.extra['seed']}) in {store}"),
        ("stake / unbonding", f"{fmt_eth(p['minStake'])} / {p['unbondingPeriod']} s"),
        ("round", f"submission period {p['submissionPeriod']} s, grace {p['gracePeriod']} s, quorum {p['quorum']}, "
                  f"cap {p['maxUpdatesPerRound'] or 1000}, max samples {p['maxSamplesPerUpdate']}"),
        ("reward / slash", f"{fmt_eth(p['rewardPerRound'])} per round (pool funded with {fmt_eth(cfg.fund)}) / "
                           f"{p['slashBps']} bps"),
        ("norm bound", f"{p['normBound'] / 1e6:g}" if p["normBound"] else "none"),
        ("privacy", _privacy_row(p)),
        ("mode", (f"PRIVATE (secure aggregation): t = {p['secThreshold']}, clip {p['secClip'] / 1e6:g}, "
                  f"2^-{p['secScaleBits']} fixed point, {p['secRingBits']}-bit ring; join {p['joinPeriod']} s, "
                  f"reveal {p['revealPeriod']} s; masked updates are public, anyone re-computes a round")
         if p.get("privacy") else "robust (updates sealed to the aggregator and the committee)"),
        ("strategy", f"{dep.extra['strategy']} {dep.extra['strategy_params'] or ''}".strip()),
        ("committee", (f"{len(dep.extra['committee']['verifiers'])} verifier(s), threshold "
                       f"{dep.extra['committee']['threshold']}, attestation period {p['attestationPeriod']} s, "
                       f"aggregator bond {fmt_eth(p['aggregatorBond'])}") if dep.extra["committee"]["verifiers"]
         else "none: TRUSTED-AGGREGATOR mode (proposals apply unchecked; add --verifier ADDRESS:KEY)"),
        ("aggregator key", f"public {p['aggregatorKey']}; private key "
                           + ("generated into " if res.key_generated else "read from ") + f"{res.key_file}"),
        ("deployments file", str(deployments)),
        ("gas", f"{res.gas:,}"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        click.echo(f"{k:<{width}}  {v}")
    if res.key_generated:
        click.echo(f"\nKeep {res.key_file} secret (mode 0600): it opens every client's update. Give it only to the "
                   "aggregator (and to auditors who should re-compute rounds).")
    net, hint = _network_for_others(dep.network)
    click.echo("\nNext, one terminal each:\n"
               f"  ape run aggregator --network {net} --account <aggregator> --key-file {res.key_file} "
               f"--eval-data data/eval.npz --deployments {deployments}\n"
               f"  ape run client --network {net} --account <client> --data data/client-0.npz "
               f"--deployments {deployments}\n"
               + "".join(f"  ape run verifier --network {net} --account <verifier {v[:10]}…> --key-file <its key> "
                         f"--deployments {deployments}\n" for v in dep.extra["committee"]["verifiers"])
               + f"  ape run verify_round 1 --network {net} --deployments {deployments}"
               + (f"\n{hint}" if hint else ""))


def _privacy_row(p: dict) -> str:
    if not p.get("dpClip"):
        return "no differential privacy (add --dp-clip C --dp-noise Z)"
    budget = (f", epsilon budget {p['dpBudget'] / 1e6:g}: at most {p['dpMaxRounds']} round(s)" if p["dpBudget"]
              else ", no epsilon budget")
    return (f"central DP: clip {p['dpClip'] / 1e6:g}, noise multiplier {p['dpNoise'] / 1e6:g}, delta "
            f"{p['dpDelta'] / 1e18:.3g}{budget}; noise seed committed as {p['dpSeedCommitment'][:12]}…")


def _network_for_others(recorded: str) -> tuple[str, str]:
    """The --network the other parties should pass, and a line on what it needs (or "").

    A local node reached by URL is printed with its URL; a public network's URL may hold an API key,
    so it is never printed: the `node` provider then reads it from ape-config.yaml.
    """
    import os

    from ape import networks

    provider = networks.provider
    eco, name, prov = recorded.split(":")
    uri = str(getattr(provider, "uri", "") or "")
    if prov == "node" and name == "local" and uri:
        return f"{eco}:{name}:{uri}", ""
    if prov == "node":
        return recorded, (f"({recorded} reads the node's URL from ape-config.yaml: node: {{{eco}: {{{name}: "
                          f"{{uri: <your RPC URL>}}}}}}; without it Ape connects to a public RPC. Or pass "
                          f"--network {eco}:{name}:<your RPC URL> as here.)")
    if prov == "foundry" and os.environ.get("APE_FOUNDRY_HOST"):
        return recorded, (f"(with APE_FOUNDRY_HOST={os.environ['APE_FOUNDRY_HOST']} exported in each terminal, as "
                          "here: without it ape-foundry starts an Anvil of its own, without this job)")
    return recorded, ""
