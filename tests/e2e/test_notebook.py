"""The walkthrough notebook: committed without outputs, and it runs from top to bottom.

The notebook runs in its own kernel (the venv's Python, through ipykernel's
`python3` kernelspec), which connects to its own embedded chain: independent of
the chain `ape test` connects this process to.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "walkthrough.ipynb"
STRIP_TOOL = ROOT / "tools" / "strip_notebook.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _strip_tool():
    spec = importlib.util.spec_from_file_location("strip_notebook", STRIP_TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def test_committed_notebook_is_stripped():
    nb = nbformat.read(NOTEBOOK, as_version=nbformat.NO_CONVERT)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the notebook has no code cells"
    for cell in code:
        assert cell.outputs == [], f"cell {cell.id} has outputs: run tools/strip_notebook.py {NOTEBOOK.relative_to(ROOT)}"
        assert cell.execution_count is None, f"cell {cell.id} has an execution count"
    assert _strip_tool().problems(nb) == []
    assert nb.metadata.kernelspec.name == "python3"
    check = subprocess.run([sys.executable, str(STRIP_TOOL), "--check", str(NOTEBOOK)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_strip_tool_round_trip(tmp_path):
    """Stripping an executed-looking copy gives back the committed bytes."""
    nb = nbformat.read(NOTEBOOK, as_version=nbformat.NO_CONVERT)
    dirty = nbformat.from_dict(json.loads(json.dumps(nb)))
    for n, cell in enumerate(c for c in dirty.cells if c.cell_type == "code"):
        cell.execution_count = n + 1
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
        cell.metadata["execution"] = {"iopub.status.idle": "2024-01-01T00:00:00Z"}
    dirty.metadata["language_info"] = {"name": "python", "version": "3.11.9", "mimetype": "text/x-python"}
    path = tmp_path / "dirty.ipynb"
    nbformat.write(dirty, path)
    tool = _strip_tool()
    assert tool.main(["--check", str(path)]) == 1
    assert tool.main([str(path)]) == 0
    assert tool.main(["--check", str(path)]) == 0
    assert path.read_bytes() == NOTEBOOK.read_bytes()


def test_python3_kernel_is_this_python():
    """nbclient starts the `python3` kernelspec; it must be ipykernel's own, which runs sys.executable."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    # jupyter_client replaces a bare "python"/"python3" with sys.executable when it launches the kernel.
    assert spec.argv[0] in ("python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}", sys.executable), (
        f"the python3 kernelspec in {spec.resource_dir} runs {spec.argv[0]}, not this venv's Python; "
        "remove that kernelspec (jupyter kernelspec list)"
    )


@pytest.mark.slow
def test_walkthrough_runs(tmp_path, monkeypatch):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    out = tmp_path / "notebook-out"
    monkeypatch.setenv("CHAINFL_NOTEBOOK_OUT", str(out))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    t0 = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as exc:
        pytest.fail(f"the notebook failed (executed copy: {tmp_path / 'executed.ipynb'}):\n{exc}")
    finally:
        nbformat.write(nb, tmp_path / "executed.ipynb")
    print(f"walkthrough executed in {time.perf_counter() - t0:.1f} s")

    cells = {c.id: c for c in nb.cells}
    assert not [c.id for c in nb.cells if any(o.output_type == "error" for o in c.get("outputs", []))]

    # The kernel was this virtual environment's Python.
    summary = json.loads((out / "summary.json").read_text())
    assert summary["python"] == sys.executable and summary["prefix"] == sys.prefix

    # The plots were saved and shown.
    for name in ("partition.png", "accuracy.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name
    shown = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(shown) >= 2

    # The federation ran every round, the attacker was rejected and slashed, the others paid.
    assert [r["status"] for r in summary["rounds"]] == ["finalized"] * len(summary["rounds"]) and summary["rounds"]
    assert summary["rounds"][0]["rejected"] == 1
    (slashed_client, slashed), = summary["slashed_wei"].items()
    assert "attacker" in slashed_client and slashed > 0
    assert summary["rewards_wei"] and all(v > 0 for v in summary["rewards_wei"].values())
    assert summary["rounds"][-1]["accuracy"] > 0.3
    assert "UpdateRejected" in cells["events"].outputs[-1]["data"]["text/plain"]
    assert "NothingToClaim" in _stdout(cells["money"])

    # Every round re-computes to the on-chain hash, and a wrong claim is caught.
    recompute = _stdout(cells["recompute"])
    assert recompute.count("MATCH") == len(summary["rounds"]) and "MISMATCH" not in recompute
    assert all(summary["recomputed_match"].values())
    assert all(summary["verified"].values())
    verification = json.loads((out / "verification.json").read_text())
    assert [v["ok"] for v in verification] == [True] * len(summary["rounds"])
    assert any(c["name"] == "re-computation" and c["status"] == "pass" for c in verification[0]["checks"])
    assert summary["wrong_strategy_detected"]
    assert "does NOT check out" in _stdout(cells["negative"])

    # The committee: every round of the main run attested; the rogue aggregator's round 2 disputed,
    # nothing applied, nobody honest slashed, the bond forfeited, and the failed round checks out publicly.
    assert [r["status"] for r in summary["rogue_rounds"]] == ["finalized", "disputed", "finalized"]
    assert summary["rogue_committee"]["disputed_rounds"] == [2]
    assert summary["rogue_committee"]["honest_clients_slashed"] == []
    assert summary["rogue_committee"]["bond_forfeited"] > 0
    assert summary["rogue_verified"]
    assert summary["rogue_claim_refuted"]

    # Private mode: 5 join, 2 drop out, 3 accepted each round; re-computed by a party holding no key.
    assert summary["private_rounds"] == [dict(round=r, status="finalized", accepted=3) for r in (1, 2)]
    assert summary["private_verified_without_key"]
    assert "private mode, no key: 3 masked vector(s) summed, 2 dropout(s)" in _stdout(cells["private"])
    assert "round 2 checks out" in _stdout(cells["rogue-verify"])
