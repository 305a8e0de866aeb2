"""Strip notebooks for git: no outputs, no execution counts, no per-run metadata.

    .venv/bin/python tools/strip_notebook.py notebooks/walkthrough.ipynb          # strip in place
    .venv/bin/python tools/strip_notebook.py --check notebooks/walkthrough.ipynb  # exit 1 if not stripped

Cell ids are kept (nbformat >= 4.5 needs them), so stripping an executed copy of
a stripped notebook gives back the same bytes.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import nbformat

# Cell metadata that Jupyter front ends add when a cell is run or viewed.
VOLATILE_CELL_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime", "jupyter")
KEEP_NOTEBOOK_METADATA = ("kernelspec",)


def strip(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A stripped copy of `nb`."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in VOLATILE_CELL_METADATA:
            cell.metadata.pop(key, None)
    language = nb.metadata.get("language_info", {}).get("name", "python")
    nb.metadata = nbformat.from_dict({k: nb.metadata[k] for k in KEEP_NOTEBOOK_METADATA if k in nb.metadata})
    nb.metadata["language_info"] = {"name": language}
    return nb


def problems(nb: nbformat.NotebookNode) -> list[str]:
    """What stands between `nb` and its stripped form (empty if it is stripped)."""
    out = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            if cell.outputs:
                out.append(f"cell {i} ({cell.get('id', '?')}) has {len(cell.outputs)} output(s)")
            if cell.execution_count is not None:
                out.append(f"cell {i} ({cell.get('id', '?')}) has execution_count {cell.execution_count}")
        extra = [k for k in VOLATILE_CELL_METADATA if k in cell.metadata]
        if extra:
            out.append(f"cell {i} ({cell.get('id', '?')}) has metadata {extra}")
    if nb.metadata != strip(nb).metadata:
        out.append(f"notebook metadata {sorted(nb.metadata)} is more than {list(KEEP_NOTEBOOK_METADATA)} "
                   "and language_info.name")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if a notebook is not stripped")
    args = parser.parse_args(argv)
    status = 0
    for path in args.notebooks:
        nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        found = problems(nb)
        if args.check:
            if found:
                status = 1
                print(f"{path}: not stripped (run tools/strip_notebook.py {path})")
                for p in found:
                    print(f"  {p}")
            continue
        if found:
            nbformat.validate(strip(nb))
            nbformat.write(strip(nb), path)
            print(f"{path}: stripped")
    return status


if __name__ == "__main__":
    sys.exit(main())
