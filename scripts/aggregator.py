"""ape run aggregator: the aggregator's long-running process (start rounds, wait, verify + aggregate, finalize)."""
from pathlib import Path

import click
from ape.cli import ConnectedProviderCommand, account_option

from ml.parties import DEFAULT_DEPLOYMENTS, DEFAULT_KEY_FILE, Log
from ml.rogue import ROGUE_AGGREGATOR_MODES, UnknownRogueModeError, parse_rogue_rounds


def _rounds(text: str) -> tuple[int, ...] | None:
    try:
        return parse_rogue_rounds(text)
    except UnknownRogueModeError as exc:
        raise click.BadParameter(str(exc), param_hint="--rogue-rounds") from None


@click.command(cls=ConnectedProviderCommand, short_help="Run the aggregator of a deployed job")
@account_option()
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=Path(DEFAULT_KEY_FILE), show_default=True, help="The aggregator's sealing key (from deploy)")
@click.option("--eval-data", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Held-out .npz (x, y) to report each global model's accuracy on (optional)")
@click.option("--store", help="Update store: a folder or an IPFS API URL [the one recorded by deploy]")
@click.option("--deployments", type=click.Path(dir_okay=False, path_type=Path), default=Path(DEFAULT_DEPLOYMENTS),
              show_default=True, help="Deployments file written by `ape run deploy`")
@click.option("--rounds", type=int, default=0, show_default=True,
              help="Stop once the job's round N is closed (counted on chain, so a restart continues); 0 = run "
                   "until stopped")
@click.option("--min-clients", type=int, default=1, show_default=True,
              help="Active (registered) clients needed before a round starts")
@click.option("--advance-time", is_flag=True,
              help="Local dev chain only: when not every active client submitted within --patience, move the "
                   "chain's time past the deadline instead of waiting for it")
@click.option("--patience", type=float, default=60.0, show_default=True,
              help="Seconds to wait for every active client before --advance-time moves time")
@click.option("--poll", type=float, default=5.0, show_default=True,
              help="Longest pause between two looks at the chain (polling backs off from 0.5 s to this)")
@click.option("--rogue-aggregator", type=click.Choice(ROGUE_AGGREGATOR_MODES), default=None,
              help="Demo: behave maliciously (slash_honest, wrong_model, exclude_honest, grind_noise) to see the committee "
                   "dispute the proposal and the bond forfeited; needs a job with verifiers")
@click.option("--rogue-rounds", default="all", show_default=True,
              help="With --rogue-aggregator: the rounds to cheat in, as a list (1,3) or 'all'")
@click.option("--confirmations", type=click.IntRange(0), default=None,
              help="Blocks a change must be under before this party acts on it (a reorg can undo the newest "
                   "blocks; a dropped submission is sent again) [0 on a local dev chain, 2 elsewhere]")
def cli(account, key_file, eval_data, store, deployments, rounds, min_clients, advance_time, patience, poll,
        rogue_aggregator, rogue_rounds, confirmations):
    """Run rounds of a deployed job: start a round, wait until every active client submitted (or the
    deadline), open and check the sealed updates, aggregate, publish the global model, finalize. Stops
    after --rounds, or on Ctrl-C / SIGTERM (exit 0); run it again to continue where it stopped."""
    from ape.logging import logger

    from ml.parties import AggregatorOptions, AggregatorParty, Stop, load_npz, open_job, prepare_account, run_party
    from ml.sealing import load_private_key

    logger.set_level("WARNING")
    log = Log("aggregator")
    stop = Stop().install(log)

    def make() -> AggregatorParty:
        prepare_account(account, log)
        job = open_job(deployments, store, confirmations=confirmations)
        return AggregatorParty(
            account, job, load_private_key(key_file),
            AggregatorOptions(rounds=rounds, min_clients=min_clients, advance_time=advance_time,
                              patience=patience, max_poll=poll, rogue=rogue_aggregator,
                              rogue_rounds=_rounds(rogue_rounds)),
            eval_data=load_npz(eval_data, "--eval-data") if eval_data else None, stop=stop, log=log,
        )

    if (ran := run_party(make, log)) is None:
        return
    party, why = ran
    for rec in party.records:
        parts = [f"round {rec.round_id} {rec.status}", f"{rec.accepted} accepted, {rec.rejected} rejected, "
                 f"{rec.excluded} excluded"]
        if rec.accuracy == rec.accuracy:  # not NaN: there was an evaluation set
            parts.append(f"accuracy {rec.accuracy:.4f}")
        parts.append(f"aggregator gas {rec.gas:,}")
        if rec.seconds is not None:
            parts.append(f"round time {rec.seconds:.1f} s")
        log("summary: " + "; ".join(parts))
    log(f"exiting: {why}")
