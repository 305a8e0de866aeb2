"""ape run client: one data holder's long-running process (register, train, submit, claim)."""
from pathlib import Path

import click
from ape.cli import ConnectedProviderCommand, account_option

from ml.parties import DEFAULT_DEPLOYMENTS, Log
from ml.training import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_LEARNING_RATE


@click.command(cls=ConnectedProviderCommand, short_help="Run a client of a deployed job")
@account_option()
@click.option("--data", "data_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="This client's own training data: an .npz with x and y (see `python -m ml.parties.split`)")
@click.option("--store", help="Update store: a folder or an IPFS API URL [the one recorded by deploy]")
@click.option("--deployments", type=click.Path(dir_okay=False, path_type=Path), default=Path(DEFAULT_DEPLOYMENTS),
              show_default=True, help="Deployments file written by `ape run deploy`")
@click.option("--stake", help="Stake to lock when registering, in ETH [the job's minimum]")
@click.option("--top-up", is_flag=True, help="After a slash, top the stake up to the minimum to keep taking part")
@click.option("--rounds", type=int, default=0, show_default=True,
              help="Stop once the job's round N is closed and its reward claimed; 0 = run until stopped")
@click.option("--epochs", type=int, default=DEFAULT_EPOCHS, show_default=True, help="Local epochs per round")
@click.option("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, show_default=True, help="Local mini-batch size")
@click.option("--lr", "learning_rate", type=float, default=DEFAULT_LEARNING_RATE, show_default=True,
              help="Local SGD learning rate")
@click.option("--mu", type=float, default=0.0, show_default=True, help="FedProx proximal term (0 = FedAvg)")
@click.option("--seed", type=int, default=None, help="Training seed [derived from the address]")
@click.option("--poll", type=float, default=5.0, show_default=True,
              help="Longest pause between two looks at the chain (polling backs off from 0.5 s to this)")
@click.option("--claim-every", type=click.IntRange(1), default=1, show_default=True,
              help="Withdraw the rewards every N rounds (and at exit); the rounds' rewards are claimed in one "
                   "transaction while waiting, never between two submissions")
@click.option("--confirmations", type=click.IntRange(0), default=None,
              help="Blocks a change must be under before this party acts on it (a reorg can undo the newest "
                   "blocks; a dropped submission is sent again) [0 on a local dev chain, 2 elsewhere]")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The client's X25519 key, registered on chain: generated (mode 0600) at registration if the "
                   "file does not exist; private mode opens the Shamir shares dealt to it with it "
                   "[client-<address>.key next to the deployments file]")
def cli(account, data_file, store, deployments, stake, top_up, rounds, epochs, batch_size, learning_rate, mu, seed,
        poll, claim_every, confirmations, key_file):
    """Take part in a deployed job: register with a stake if needed, then for every round train the
    global model on --data, seal the update to the aggregator and the committee (or, in a private job, join,
    mask it and reveal after the deadline), store it and submit its commitment;
    claim and withdraw the rewards of finalized rounds. Stops after --rounds, or on Ctrl-C / SIGTERM
    (exit 0); run it again to continue (it never submits twice to a round)."""
    from ape.logging import logger

    from ml.parties import (ClientOptions, ClientParty, Stop, fmt_eth, load_npz, open_job, parse_eth,
                          prepare_account, run_party)

    logger.set_level("WARNING")
    log = Log(f"client {account.address[:10]}")
    stop = Stop().install(log)

    def make() -> ClientParty:
        prepare_account(account, log)
        job = open_job(deployments, store, confirmations=confirmations)
        x, y = load_npz(data_file, "--data")
        opts = ClientOptions(rounds=rounds, stake=parse_eth(stake, "--stake") if stake else None, top_up=top_up,
                             epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, mu=mu, seed=seed,
                             max_poll=poll, claim_every=claim_every, key_file=str(key_file) if key_file else None)
        log(f"job {job.fl.address} on {job.network}; {len(x)} local samples from {data_file}; store {job.store}")
        return ClientParty(account, job, x, y, opts, stop=stop, log=log, data_name=str(data_file))

    if (ran := run_party(make, log)) is None:
        return
    party, why = ran
    log(f"exiting: {why}; took part in round(s) {sorted(party.submitted) or 'none'}; "
        f"rewards withdrawn by this run {fmt_eth(party.received)}")
