"""ape run verify_round ROUND...: re-check finalized rounds from the chain and the update store."""
import json
import sys
from pathlib import Path

import click
from ape.cli import ConnectedProviderCommand

from ml.parties import DEFAULT_DEPLOYMENTS, PartyError, user_errors


@click.command(cls=ConnectedProviderCommand, short_help="Re-check finalized rounds")
@click.argument("rounds", nargs=-1, required=True)
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A sealing key the updates were sealed to (the aggregator's or a verifier's): also open the "
                   "sealed updates and re-compute the aggregation")
@click.option("--store", help="Update store: a folder or an IPFS API URL [the one recorded by deploy]")
@click.option("--deployments", type=click.Path(dir_okay=False, path_type=Path), default=Path(DEFAULT_DEPLOYMENTS),
              show_default=True, help="Deployments file written by `ape run deploy`")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON instead of tables")
def cli(rounds, key_file, store, deployments, as_json):
    """Re-check each ROUND (a number, or `all` for every finalized round): the global model blob
    matches its on-chain hash, every accepted commitment has its blob, weights, rewards and slashes
    match the recorded statuses, the committee attested the proposal's digest, and every rejection
    checks out from its public evidence (the disclosed key opens that one update, which fails with
    the recorded reason); a disputed round applied nothing. With --key-file, also re-compute the
    aggregation from the sealed updates and compare the model hash bit for bit.

    Exit status 0 when every round checks out, 1 when one does not (the table says what and why)."""
    from ape.logging import logger

    from ml.chain import Phase
    from ml.parties import open_job
    from ml.sealing import load_private_key
    from ml.verify import FAIL, PASS, verify_round

    logger.set_level("WARNING")
    if list(rounds) != ["all"] and not all(r.isdigit() for r in rounds):
        raise click.BadParameter(f"{' '.join(rounds)}: give round numbers, or `all`", param_hint="ROUNDS")
    try:
        job = open_job(deployments, store)
        key = load_private_key(key_file) if key_file else None
        if list(rounds) == ["all"]:
            ids = [r for r in range(1, job.fl.current_round() + 1) if job.fl.round(r).phase in (Phase.FINALIZED, Phase.FAILED)]
            if not ids:
                raise PartyError("no finalized round yet")
        else:
            ids = [int(r) for r in rounds]
    except user_errors() as exc:
        raise click.ClickException(str(exc)) from None

    reports = [verify_round(job.fl, job.store, job.spec, r, chain_id=job.chain_id, strategy=job.strategy,
                            strategy_params=job.strategy_params, private_key=key,
                            initial_locator=job.deployment.extra.get("initial_model_locator")) for r in ids]
    if as_json:
        click.echo(json.dumps([rep.to_dict() for rep in reports], indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        console = Console(width=max(120, Console().width))
        style = {PASS: "[green]PASS[/]", FAIL: "[bold red]FAIL[/]"}
        for rep in reports:
            table = Table(title=f"Round {rep.round_id} of {job.fl.address} on {job.network}")
            table.add_column("check")
            table.add_column("result")
            table.add_column("why", overflow="fold")
            for c in rep.checks:
                table.add_row(c.name, style.get(c.status, "[yellow]SKIP[/]"), c.detail)
            console.print(table)
        for rep in reports:
            console.print(rep.summary(), soft_wrap=True)
    sys.exit(0 if all(rep.ok for rep in reports) else 1)
