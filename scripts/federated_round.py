"""ape run federated_round: train a real Keras model through the contract, every party in one process."""
import os
import sys
from pathlib import Path

import click
from ape.cli import ConnectedProviderCommand, network_option

from ml.attacks import ATTACKS
from ml.parallel import check_workers
from ml.rogue import ROGUE_AGGREGATOR_MODES, ROGUE_VERIFIER_MODES, UnknownRogueModeError, parse_rogue_rounds
from ml.training import DEFAULT_BATCH_SIZE, DEFAULT_LEARNING_RATE
from ml.parties.federation import STRATEGY_CHOICES, FederationConfig, FederationError, run_federation
from ml.store import BlobStoreError


# The default chain is the faster one end to end (bench.rounds --part default: an Anvil that ape-foundry
# starts took 0.85x the embedded chain's time with these defaults, start-up included). `ape test` keeps
# the embedded chain (ape-config.yaml).
DEFAULT_NETWORK = "ethereum:local:foundry"
# `make setup` links anvil next to this Python: find it even when the venv is not activated.
if (Path(sys.executable).parent / "anvil").exists():
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def _workers(ctx: click.Context, param: click.Parameter, value: str) -> int | str:
    """--workers: 'auto' or a positive integer."""
    try:
        return check_workers(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc).removeprefix("--workers "), param_hint="--workers") from None


@click.command(cls=ConnectedProviderCommand, short_help="Run a federation on a local chain")
@network_option(default=DEFAULT_NETWORK,
                help=f"Ecosystem:network:provider [{DEFAULT_NETWORK}: an Anvil started for the run; "
                     "ethereum:local:test is the embedded chain, ethereum:local:<URL> a node already running]")
@click.option("--dataset", default="digits", show_default=True,
              help="digits (bundled with scikit-learn), mnist (a local mnist.npz, see --data-path), or a .npz/.csv file")
@click.option("--data-path", default=None, help="Path of mnist.npz (default ~/.keras/datasets/mnist.npz)")
@click.option("--partition", type=click.Choice(["iid", "dirichlet", "shards"]), default="iid", show_default=True,
              help="How the training set is split across clients")
@click.option("--alpha", type=float, default=0.5, show_default=True,
              help="Dirichlet concentration (smaller = more non-IID); with --partition dirichlet")
@click.option("--clients", type=int, default=5, show_default=True, help="Number of data holders")
@click.option("--fraction", type=float, default=1.0, show_default=True,
              help="Fraction of clients that train in each round (the contract caps updates per round)")
@click.option("--rounds", type=int, default=5, show_default=True, help="Number of federated rounds")
@click.option("--epochs", type=int, default=1, show_default=True, help="Local epochs per round")
@click.option("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, show_default=True, help="Local mini-batch size")
@click.option("--lr", "learning_rate", type=float, default=DEFAULT_LEARNING_RATE, show_default=True, help="Local SGD learning rate")
@click.option("--mu", type=float, default=0.0, show_default=True, help="FedProx proximal term (0 = FedAvg)")
@click.option("--arch", type=click.Choice(["mlp", "cnn"]), default="mlp", show_default=True, help="Model")
@click.option("--strategy", type=click.Choice(STRATEGY_CHOICES), default="fedavg", show_default=True,
              help="Aggregation: FedAvg weighted by samples, or a robust one")
@click.option("--krum-f", type=int, default=1, show_default=True, help="Byzantine clients tolerated by (multi_)krum")
@click.option("--trim-beta", type=float, default=0.2, show_default=True,
              help="Fraction trimmed at each end by trimmed_mean")
@click.option("--attackers", type=int, default=0, show_default=True,
              help="Number of simulated malicious clients (the last ones)")
@click.option("--attack", type=click.Choice(ATTACKS), default="signflip", show_default=True,
              help="What the attackers send: signflip/scale (x10), nan, labelflip, tamper (blob != commitment), "
                   "garbage (cannot be opened), badlocator (a hostile locator, blob withheld: missing_blob), "
                   "inflate (claims 100x its samples: refused with --permissioned)")
@click.option("--norm-bound", type=float, default=0.0, show_default=True,
              help="Published L2 bound on an update's change; updates above it are rejected and slashed (0 = none)")
@click.option("--dp-clip", type=float, default=0.0, show_default=True,
              help="Differential privacy (central, DP-FedAvg): clip each accepted update's change to this L2 norm "
                   "C and average uniformly (needs --strategy fedavg); 0 = no DP")
@click.option("--dp-noise", type=float, default=0.0, show_default=True,
              help="DP noise multiplier z: Gaussian noise of std z*C/n on the mean of n updates, from a seed sealed "
                   "to the committee (who re-compute it); epsilon is reported per round")
@click.option("--dp-delta", type=float, default=0.0, show_default=True,
              help="DP target delta; 0 = 1/N for the N training samples")
@click.option("--dp-budget", type=float, default=0.0, show_default=True,
              help="Epsilon budget: the run stops (and the contract refuses) the round that would exceed it; "
                   "0 = none")
@click.option("--privacy", type=click.Choice(["robust", "secagg"]), default="robust", show_default=True,
              help="robust: updates sealed to the aggregator and the committee (every strategy); secagg: private "
                   "mode, secure aggregation: clients join each round, mask their updates pairwise and publish "
                   "them; anyone re-computes the sum, nobody sees one update (FedAvg/FedProx only)")
@click.option("--dropouts", type=int, default=0, show_default=True,
              help="Chosen clients that never submit in each round (the last ones; simulated). With secagg they "
                   "join first (up to the round's clients minus --secagg-threshold) and the survivors' reveals "
                   "remove their masks; in robust mode they simply stay away (the same clients: a like-for-like "
                   "comparison)")
@click.option("--secagg-threshold", "sec_threshold", type=int, default=2, show_default=True,
              help="secagg: t, the Shamir threshold: t survivors rebuild a dropped participant's key; fewer "
                   "than t colluding clients learn nothing")
@click.option("--secagg-clip", "sec_clip", type=float, default=4.0, show_default=True,
              help="secagg: bound of each coordinate of an update's change (fixed point)")
@click.option("--secagg-scale-bits", "sec_scale_bits", type=int, default=20, show_default=True,
              help="secagg: fixed-point precision, 2**-bits per sample")
@click.option("--secagg-ring-bits", "sec_ring_bits", type=click.Choice(["16", "32", "64"]), default="64",
              show_default=True, callback=lambda ctx, param, v: int(v),
              help="secagg: masked vectors live mod 2**bits (8, 4 or 2 bytes a parameter)")
@click.option("--stake", "stake_eth", type=float, default=1.0, show_default=True, help="Stake per client (ETH)")
@click.option("--reward", "reward_eth", type=float, default=0.1, show_default=True, help="Reward per round (ETH)")
@click.option("--slash-bps", type=int, default=5000, show_default=True,
              help="Share of the stake a rejected update loses, in basis points")
@click.option("--quorum", type=int, default=1, show_default=True,
              help="Accepted updates a round needs for a new model; below it the round fails (bad updates are "
                   "slashed all the same)")
@click.option("--treasury", default="0x0000000000000000000000000000000000000000", show_default=True,
              help="Address that receives slashed stake (the zero address burns it); never the reward pool")
@click.option("--permissioned", is_flag=True,
              help="Permissioned job: the admin admits each client with its true sample count, and the "
                   "contract refuses any larger claim")
@click.option("--verifiers", type=click.IntRange(0, 32), default=2, show_default=True,
              help="Verifier committee played in this process: each re-computes every proposal and attests or "
                   "disputes it. 0 = trusted-aggregator mode (proposals apply unchecked; for demos)")
@click.option("--threshold", type=int, default=2, show_default=True,
              help="m: matching attestations that apply a proposal (1..--verifiers); --verifiers - m + 1 "
                   "disputes fail it")
@click.option("--bond", "bond_eth", type=float, default=0.1, show_default=True,
              help="The aggregator's bond (ETH), forfeited to the treasury by a disputed proposal")
@click.option("--attestation-period", type=int, default=600, show_default=True,
              help="Seconds the committee has to decide on a proposal before anyone may expire it")
@click.option("--rogue-aggregator", type=click.Choice(ROGUE_AGGREGATOR_MODES), default=None,
              help="Simulate a malicious aggregator: slash_honest (rejects an honest client with a forged NaN "
                   "claim), wrong_model (proposes a steered model), exclude_honest (leaves an honest client out), "
                   "grind_noise (a DP job: noise from a seed it picked, not the committed one). The committee "
                   "disputes, the round fails, the bond is forfeited, nobody honest is slashed")
@click.option("--rogue-rounds", default="1", show_default=True,
              help="Rounds the rogue aggregator cheats in: a list (1,3) or 'all'")
@click.option("--rogue-verifier", type=click.Choice(ROGUE_VERIFIER_MODES), default=None,
              help="Make the first verifier malicious: dispute_all (blocks honest rounds unless the others reach "
                   "the threshold) or attest_all (attests anything, unchecked)")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for data split, partition, init, training")
@click.option("--workers", default="auto", show_default=True, callback=_workers,
              help="Processes that train the clients of a round in parallel; 1 = one after the other in this "
                   "process; 'auto' = train round 1 here, then start one worker per core (at most one per "
                   "client) in the background if round 1's training says they save more than their start-up "
                   "(a worker spends about 8 s importing TensorFlow). The models are bit-identical either way")
@click.option("--out", type=click.Path(path_type=Path), default=Path("out"), show_default=True,
              help="Output folder: report.json, rounds.csv, accuracy.png, final model, blob store, deployment")
@click.option("--store", default=None, help="Update store: a folder or an IPFS API URL (default OUT/store)")
@click.option("--fresh", is_flag=True, help="Deploy a new job even if OUT holds a usable deployment")
@click.option("--no-baseline", is_flag=True, help="Skip the centralized baseline")
def cli(no_baseline, **options):
    """Deploy the contract (or resume the job in --out), register clients, run rounds, claim rewards.

    Every party (admin, aggregator, verifiers, clients) is a test account of a local chain: an Anvil
    started for the run by default, or --network ethereum:local:test (the embedded chain) or a local node.
    On a node that outlives the run (--network ethereum:local:<URL>), running the same command again
    after an interruption continues from the chain's state.
    """
    try:
        options["rogue_rounds"] = parse_rogue_rounds(options.pop("rogue_rounds"))
    except UnknownRogueModeError as exc:
        raise click.BadParameter(str(exc), param_hint="--rogue-rounds") from None
    cfg = FederationConfig(baseline=not no_baseline, **options)
    try:
        run_federation(cfg)
    except (FederationError, ValueError, FileNotFoundError, BlobStoreError) as exc:
        raise click.ClickException(str(exc)) from None
