"""Contract-suite-only fixtures (the shared ones are in tests/conftest.py)."""
import pytest

# One day: far more than a whole test session lasts.
CLOCK_LEAD = 86_400


@pytest.fixture(autouse=True)
def _chain_clock_ahead_of_wall_clock(chain):
    """Makes `chain.pending_timestamp = t` exact on the embedded chain.

    py-evm (eth-tester) stamps a new block with max(wall clock, parent + 1) and
    time-travels by mining a block at t - 1. While the chain's clock trails the
    wall clock, "the next block" can silently be later than t (or time travel to
    parent + 1 corrupts the pending header). One jump a day ahead, inside the
    test's snapshot, makes every later block exactly parent + 1 unless a test
    moves time itself. Harmless on Anvil and Ganache."""
    chain.pending_timestamp = chain.blocks.head.timestamp + CLOCK_LEAD
    yield


@pytest.fixture(scope="session", autouse=True)
def _faster_embedded_chain():
    """Speed-ups (memoized pure functions, one skipped replay); behaviour is unchanged.

    - Without coincurve, eth-keys recovers signatures in pure Python, and
      eth-tester/py-evm recover the sender of each transaction three times with
      the same inputs: memoize that pure function.
    - After every transaction Ape replays it to print the contract's
      console.log lines; FederatedLearning has none, so skip the replay.
    - On Anvil and Ganache, Ape explains each revert by asking whether addresses
      are test accounts, and re-derives the accounts from the mnemonic (HD
      derivation in pure Python, ~0.4 s per revert): memoize the derivation.

    On py-evm a transaction gets about 40% cheaper, on Anvil a revert about 10x:
    this is what lets the stateful test run 200 examples within the time budget."""
    import functools

    import ape_ethereum.provider
    import ape_test.accounts
    import eth_keys.backends.native.main as native

    mp = pytest.MonkeyPatch()
    mp.setattr(native, "ecdsa_raw_recover", functools.lru_cache(maxsize=4096)(native.ecdsa_raw_recover))
    mp.setattr(ape_ethereum.provider, "_post_send_transaction", lambda txn, receipt: None)
    mp.setattr(
        ape_test.accounts,
        "generate_dev_accounts",
        functools.lru_cache(maxsize=1024)(ape_test.accounts.generate_dev_accounts),
    )
    yield
    mp.undo()


# ---------------------------------------------------------------- job helpers


@pytest.fixture
def make_params():
    """`default_params` of tests/conftest.py (test modules need not import a conftest)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("_chainfl_root_conftest", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.default_params


@pytest.fixture
def params(fl):
    """The deployed job's parameters as the contract reports them."""
    return fl.params()


@pytest.fixture
def register(fl):
    """register(*accounts, stake=None): registers each with `stake` (default: the minimum)."""
    from eth_utils import keccak

    def _register(*who, stake=None):
        amount = fl.params().minStake if stake is None else stake
        receipts = []
        for a in who:
            receipts.append(fl.register(keccak(text=f"key-{a.address}"), sender=a, value=amount))
        return receipts[0] if len(receipts) == 1 else receipts

    return _register


@pytest.fixture
def start_round(fl, aggregator):
    """start_round() -> the new round id."""

    def _start():
        fl.startRound(sender=aggregator)
        return fl.currentRound()

    return _start


@pytest.fixture
def submit(fl):
    """submit(client, samples=100, round_id=current, salt=0, locator="") -> receipt."""
    from eth_utils import keccak

    def _submit(who, samples=100, round_id=None, salt=0, locator=""):
        rid = fl.currentRound() if round_id is None else round_id
        c = keccak(text=f"update-{rid}-{who.address}-{salt}")
        return fl.submitUpdate(rid, c, samples, locator, sender=who)

    return _submit


@pytest.fixture
def fund(fl, funder):
    def _fund(amount):
        return fl.fundRewards(sender=funder, value=amount)

    return _fund


@pytest.fixture
def finalize(fl, aggregator, chain):
    """finalize(rejected=(), excluded=(), round_id=current, model=..., locator="", wait=True).

    With wait=True the chain first moves just past the deadline unless the
    round may already be finalized (everyone in) or the deadline has passed."""
    from eth_utils import keccak

    def _finalize(rejected=(), excluded=(), round_id=None, model=None, locator="", wait=True):
        rid = fl.currentRound() if round_id is None else round_id
        deadline = fl.getRound(rid).deadline
        if wait and chain.blocks.head.timestamp <= deadline and not fl.canPropose(rid):
            chain.pending_timestamp = deadline + 1
        model = keccak(text=f"model-{rid}") if model is None else model
        from .fl_helpers import propose

        return propose(fl, rid, model, rejected, excluded, locator, sender=aggregator)

    return _finalize


@pytest.fixture
def attacker(project, fl, admin):
    """A ReentrancyAttacker client aimed at `fl` (test-only contract)."""
    return admin.deploy(project.ReentrancyAttacker, fl.address)
