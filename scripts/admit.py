"""ape run admit: the registrar of a permissioned job admits clients, each with a sample allowance."""
from pathlib import Path

import click
from ape.cli import ConnectedProviderCommand, account_option

from ml.parties import DEFAULT_DEPLOYMENTS, Log, user_errors


@click.command(cls=ConnectedProviderCommand, short_help="Admit clients to a permissioned job")
@account_option()
@click.option("--client", "clients", multiple=True, required=True,
              help="Address to admit (repeat the option for several clients)")
@click.option("--samples", type=int, required=True,
              help="Most samples one update of these clients may claim (the FedAvg weight and reward share); "
                   "0 revokes the admission")
@click.option("--deployments", type=click.Path(dir_okay=False, path_type=Path), default=Path(DEFAULT_DEPLOYMENTS),
              show_default=True, help="Deployments file written by `ape run deploy`")
def cli(account, clients, samples, deployments):
    """Admit --client addresses to the job recorded in --deployments (a job deployed with
    --permissioned), each allowed at most --samples samples per update. The account must hold the
    registrar role (the deploying admin has it). Clients then register with `ape run client`."""
    from ape.logging import logger

    from ml.parties import admit_clients, open_job, prepare_account

    logger.set_level("WARNING")
    log = Log("registrar")
    try:
        prepare_account(account, log)
        job = open_job(deployments)
        admit_clients(account, job, list(clients), samples, log=log)
    except user_errors() as exc:
        raise click.ClickException(str(exc)) from None
