"""The training pool: results in task order and bit-identical to training here; failures name the client."""
from __future__ import annotations

import os

import numpy as np
import pytest

from ml.parallel import PoolError, TrainingPool, TrainTask, check_workers, resolve_workers, train_task
from ml.training import TrainConfig

DIE = 666  # a task with this seed makes its worker exit, as a crash (OOM kill, segfault) would


def train_or_die(spec, x, y, task: TrainTask):
    """Runs in the workers (imported there by name): train_task, or a dead worker for the marked task."""
    if task.seed == DIE:
        os._exit(3)
    return train_task(spec, x, y, task)


def _tasks(spec, n: int, round_id: int = 1, **cfg) -> list[TrainTask]:
    from ml.models import initial_weights

    base = initial_weights(spec, 0)
    return [TrainTask(i, round_id, base, TrainConfig(**cfg), seed=1000 * i + round_id) for i in range(n)]


def _data(digits, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(digits.x_train[i::n][:60], digits.y_train[i::n][:60]) for i in range(n)]


def _same(a, b) -> bool:
    return all(x.tobytes() == y.tobytes() for x, y in zip(a.weights, b.weights)) and a.loss == b.loss


@pytest.mark.slow
def test_pool_keeps_order_is_bit_identical_and_names_failing_clients(digits):
    from ml.models import spec_for_dataset

    # The CNN: its float reductions change with TensorFlow's intra-op thread count, the MLP's do not.
    spec = spec_for_dataset(digits, "cnn")
    data = _data(digits, 4)
    names = [f"0xclient{i}" for i in range(4)]
    tasks = _tasks(spec, 4)
    here = [train_task(spec, x, y, t) for (x, y), t in zip(data, tasks)]
    with TrainingPool(spec, data, workers=2, names=names, train_fn=train_or_die) as pool:
        pool.wait_ready()
        assert pool.startup_seconds > 0 and pool.wait_ready() == 0
        got = pool.train(list(reversed(tasks)))  # order of the tasks, not of the clients or of completion
        assert [r.num_samples for r in got] == [len(data[t.client][0]) for t in reversed(tasks)]
        assert all(_same(a, b) for a, b in zip(got, reversed(here)))

        diverged = [tasks[0], TrainTask(2, 7, tasks[2].weights, TrainConfig(learning_rate=1e30), seed=3)]
        with pytest.raises(PoolError, match=r"^local training of client 0xclient2 in round 7 failed: training "
                                            r"diverged") as err:
            pool.train(diverged)
        assert "\n" not in str(err.value)
        assert len(pool.train(tasks[:2])) == 2  # a diverged client does not break the pool

        dying = [tasks[0], TrainTask(3, 2, tasks[3].weights, TrainConfig(), seed=DIE), tasks[1]]
        with pytest.raises(PoolError, match=r"^the training worker for client 0xclient3 in round 2 died "
                                            r"\(exit code 3\)"):
            pool.train(dying)


def test_one_worker_trains_in_this_process(digits, small_spec):
    data = _data(digits, 3)
    tasks = _tasks(small_spec, 3)
    with TrainingPool(small_spec, data, workers=1, names=["a", "b", "c"]) as pool:
        got = pool.train(tasks[::-1])
        assert pool.startup_seconds == 0
        with pytest.raises(PoolError, match=r"^local training of client b in round 1 failed: training diverged"):
            pool.train([TrainTask(1, 1, tasks[1].weights, TrainConfig(learning_rate=1e30), seed=1)])
    assert all(_same(g, train_task(small_spec, *data[t.client], t)) for g, t in zip(got, tasks[::-1]))


def test_workers_setting():
    assert check_workers("auto") == "auto" and check_workers("AUTO") == "auto"
    assert check_workers("3") == 3 and check_workers(2) == 2
    for bad in ("0", "-1", "two", 1.5, True, None):
        with pytest.raises(ValueError, match="--workers must be 'auto' or a positive integer"):
            check_workers(bad)
    assert resolve_workers("auto", clients=10, cpus=2) == 2
    assert resolve_workers("auto", clients=1, cpus=8) == 1
    assert resolve_workers(4, clients=3) == 3  # never more processes than clients
    assert resolve_workers(1, clients=10) == 1
