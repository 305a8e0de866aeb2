"""The README cannot drift from the code: every command it shows names a real script, make
target or module, and every option it passes is one that command accepts (read from --help).
The commands themselves run in other tests: make test/run in CI, federated_round in
tests/e2e, deploy/aggregator/client/verify_round as separate processes in tests/multiparty,
the job.yaml keys below, and `python -m ml.parties.split` here."""
from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
import yaml

from tests.nodes import ROOT, VENV_BIN, env

README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _commands() -> list[list[str]]:
    """Shell commands from the README's bash blocks (continuations joined, comments dropped)."""
    out = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith("#") or not line:
                continue
            line = line.replace("$NET", "--network ethereum:local:foundry")
            out.append(shlex.split(line, comments=True))
    return out


@functools.cache
def _help(cmd: tuple[str, ...]) -> str:
    res = subprocess.run([*cmd, "--help"], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def _options(argv: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in argv if a.startswith("--")]


def test_readme_has_bash_commands():
    cmds = _commands()
    assert ["make", "run"] in cmds and ["make", "test"] in cmds
    assert sum(1 for c in cmds if c[:2] == ["ape", "run"]) >= 10


def test_make_targets_exist():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, flags=re.M))
    used = {c[1] for c in _commands() if c[0] == "make"} | set(re.findall(r"`make (\w+)", README))
    assert used and used <= targets, used - targets


@pytest.mark.parametrize("argv", [c for c in _commands() if c[:2] == ["ape", "run"]], ids=lambda c: " ".join(c[:3]))
def test_ape_run_commands_and_options_exist(argv):
    script = argv[2]
    assert (ROOT / "scripts" / f"{script}.py").exists(), f"README runs a script that does not exist: {script}"
    text = _help((str(VENV_BIN / "ape"), "run", script))
    for opt in _options(argv[3:]):
        assert re.search(rf"(^|[\s,]){re.escape(opt)}\b", text, flags=re.M), f"`ape run {script}` has no {opt}"


@pytest.mark.parametrize("argv", [c for c in _commands() if c[:2] == ["python", "-m"]], ids=lambda c: " ".join(c[:4]))
def test_python_modules_and_options_exist(argv):
    sub = [a for a in argv[3:4] if not a.startswith("-")]
    text = _help((sys.executable, "-m", argv[2], *sub))
    for opt in _options(argv[3:]):
        if opt != "--quick" or "--quick" in text:
            assert opt in text, f"`python -m {argv[2]}` has no {opt}"


def test_job_yaml_example_is_accepted():
    from ml.parties import make_deploy_config

    (block,) = [b for b in _blocks("yaml") if "min_stake" in b]
    cfg = make_deploy_config(yaml.safe_load(block))
    assert cfg is not None
    # the walkthrough's `--config job.yaml` is shipped, and is the README's example
    shipped = (ROOT / "job.yaml").read_text()
    assert shipped.endswith(block) and yaml.safe_load(shipped) == yaml.safe_load(block)


def test_split_command_runs(tmp_path):
    (cmd,) = [c for c in _commands() if c[:3] == ["python", "-m", "ml.parties.split"]]
    argv = [sys.executable, *cmd[1:]]
    argv[argv.index("--out") + 1] = str(tmp_path / "data")
    res = subprocess.run(argv, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    files = sorted(p.name for p in (tmp_path / "data").iterdir())
    assert files == ["client-0.npz", "client-1.npz", "client-2.npz", "eval.npz"]
    with np.load(tmp_path / "data" / "client-0.npz") as f:
        assert len(f["x"]) == len(f["y"]) > 0
