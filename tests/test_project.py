"""The project compiles every contract it ships, with the npm compiler, whatever Ape unpacked."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_contract_is_compiled(project):
    shipped = {p.stem for p in (ROOT / "contracts").rglob("*.sol") if ".cache" not in p.parts}
    assert shipped == {"FederatedLearning", "ReentrancyAttacker", "NaiveWeightsOnChain", "ForceSend"}
    for name in shipped:
        assert getattr(project, name).contract_type.name == name


def test_compiler_is_the_npm_solc_wrapper(project):
    import json

    version = json.loads((ROOT / "node_modules" / "solc" / "package.json").read_text())["version"]
    assert str(project.config.solidity.version) == version
