"""`python -m ml.parties.split`: per-client .npz files and the aggregator's evaluation set."""
from __future__ import annotations


import os
from pathlib import Path
from typing import Any

import numpy as np


def split_dataset(dataset: str, clients: int, out: str | os.PathLike[str], *, scheme: str = "iid",
                  alpha: float = 0.5, shards_per_client: int = 2, seed: int = 0,
                  data_path: str | None = None) -> dict[str, Any]:
    """Writes ``client-<i>.npz`` (its share of the training split) and ``eval.npz`` (the test split)."""
    from ..data import load_dataset
    from ..partition import partition, summarize

    ds = load_dataset(dataset, path=data_path, seed=seed)
    parts = partition(ds.y_train, clients, scheme, alpha=alpha, shards_per_client=shards_per_client, seed=seed)
    folder = Path(out).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, idx in enumerate(parts):
        path = folder / f"client-{i}.npz"
        np.savez(path, x=ds.x_train[idx].astype(np.float32), y=ds.y_train[idx].astype(np.int64))
        files.append(path)
    eval_path = folder / "eval.npz"
    np.savez(eval_path, x=ds.x_test.astype(np.float32), y=ds.y_test.astype(np.int64))
    return dict(dataset=ds, clients=files, eval=eval_path,
                summary=summarize(ds.y_train, parts, ds.num_classes))





def main(argv: list[str] | None = None) -> None:
    import click

    @click.command()
    @click.option("--dataset", default="digits", show_default=True,
                  help="digits (bundled), mnist (a local mnist.npz, see --data-path), or a .npz/.csv file")
    @click.option("--data-path", default=None, help="Path of mnist.npz or of your .npz/.csv")
    @click.option("--clients", type=int, default=3, show_default=True, help="Number of client files")
    @click.option("--partition", "scheme", type=click.Choice(["iid", "dirichlet", "shards"]), default="iid",
                  show_default=True)
    @click.option("--alpha", type=float, default=0.5, show_default=True, help="Dirichlet concentration")
    @click.option("--shards-per-client", type=int, default=2, show_default=True)
    @click.option("--seed", type=int, default=0, show_default=True, help="Seed of the train/test split and partition")
    @click.option("--out", type=click.Path(path_type=Path), default=Path("data"), show_default=True,
                  help="Folder for client-<i>.npz and eval.npz")
    def split(dataset, data_path, clients, scheme, alpha, shards_per_client, seed, out):
        """Write one .npz (x, y) per client and the aggregator's eval.npz."""
        from rich.console import Console

        res = split_dataset(dataset, clients, out, scheme=scheme, alpha=alpha,
                            shards_per_client=shards_per_client, seed=seed, data_path=data_path)
        console = Console()
        console.print(res["summary"].to_rich_table(title=f"{dataset}: {scheme} partition over {clients} clients"))
        for path in res["clients"]:
            console.print(f"client data      {path}")
        console.print(f"evaluation set   {res['eval']} ({len(res['dataset'].y_test)} samples, for the aggregator)")

    split.main(args=argv, prog_name="python -m ml.parties.split", standalone_mode=True)


if __name__ == "__main__":
    main()
