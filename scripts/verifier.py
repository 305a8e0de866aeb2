"""ape run verifier: a committee member's long-running process (re-compute each proposal, attest or dispute)."""
from pathlib import Path

import click
from ape.cli import ConnectedProviderCommand, account_option

from ml.parties import DEFAULT_DEPLOYMENTS, Log
from ml.rogue import ROGUE_VERIFIER_MODES

DEFAULT_VERIFIER_KEY = "verifier.key"


@click.command(cls=ConnectedProviderCommand, short_help="Run a verifier of a deployed job")
@account_option()
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path), default=Path(DEFAULT_VERIFIER_KEY),
              show_default=True,
              help="This verifier's X25519 sealing key (every update is sealed to it too); with --show-key it is "
                   "generated into the file (mode 0600) if the file does not exist")
@click.option("--show-key", is_flag=True,
              help="Print the ADDRESS:KEY to give `ape run deploy --verifier` (generating the key if needed), "
                   "then exit")
@click.option("--store", help="Update store: a folder or an IPFS API URL [the one recorded by deploy]")
@click.option("--deployments", type=click.Path(dir_okay=False, path_type=Path), default=Path(DEFAULT_DEPLOYMENTS),
              show_default=True, help="Deployments file written by `ape run deploy`")
@click.option("--rounds", type=int, default=0, show_default=True,
              help="Stop once the job's round N is closed (counted on chain, so a restart continues); 0 = run "
                   "until stopped")
@click.option("--rogue-verifier", type=click.Choice(ROGUE_VERIFIER_MODES), default=None,
              help="Simulate a malicious verifier: dispute_all (disputes every proposal) or attest_all (attests "
                   "anything unchecked). The threshold is what keeps either from deciding a round alone")
@click.option("--poll", type=float, default=5.0, show_default=True,
              help="Longest pause between two looks at the chain (polling backs off from 0.5 s to this)")
@click.option("--confirmations", type=click.IntRange(0), default=None,
              help="Blocks a change must be under before this party acts on it (a reorg can undo the newest "
                   "blocks; a dropped submission is sent again) [0 on a local dev chain, 2 elsewhere]")
def cli(account, key_file, show_key, store, deployments, rounds, rogue_verifier, poll, confirmations):
    """Verify every proposed round of a deployed job: fetch and open each sealed update with this
    verifier's key, re-run the aggregator's computation (the same code), check the evidence of each
    rejection, then attest when the outcome is the same and dispute otherwise, logging one line per
    decision with its reasons. Stops after --rounds, or on Ctrl-C / SIGTERM (exit 0); run it again to
    continue (votes are read back from the chain, so none is sent twice)."""
    from ape.logging import logger

    from ml.parties import open_job, prepare_account, run_party
    from ml.parties.verifier import VerifierOptions, VerifierParty
    from ml.sealing import generate_keypair, load_private_key, public_key_of, save_private_key

    logger.set_level("WARNING")
    log = Log("verifier")
    if show_key:
        if not key_file.exists():
            save_private_key(key_file, generate_keypair().private)
            log(f"generated a new key into {key_file} (mode 0600; keep it secret, it opens every update)")
        click.echo(f"{account.address}:0x{public_key_of(load_private_key(key_file)).hex()}")
        return
    if not key_file.exists():
        raise click.ClickException(f"key file {key_file} not found: create it with `ape run verifier --account ... "
                                   f"--key-file {key_file} --show-key` before the job is deployed")
    from ml.parties import Stop

    stop = Stop().install(log)

    def make() -> VerifierParty:
        prepare_account(account, log)
        job = open_job(deployments, store, confirmations=confirmations)
        return VerifierParty(account, job, load_private_key(key_file),
                             VerifierOptions(rounds=rounds, max_poll=poll, rogue=rogue_verifier), stop=stop, log=log)

    if (ran := run_party(make, log)) is None:
        return
    party, why = ran
    for rec in party.records:
        log(f"summary: round {rec.round_id} {'attested' if rec.vote == 'attest' else 'disputed'}" + ("" if rec.sent else " (not sent: the round moved on)")
            + (f": {'; '.join(rec.reasons)}" if rec.reasons else "") + f"; {rec.seconds:.1f} s")
    log(f"exiting: {why}")
