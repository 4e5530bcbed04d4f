"""Batches spread over Ray actors come back complete and in their own order, however they are grouped in rows."""

from __future__ import annotations

import sys

import pytest

from iconolens.errors import BadInputError
from iconolens.ray_pool import ROWS_PER_ACTOR, check_engine, map_on_actors, ray_session


class Squares:
    """A stage's actor in miniature: built once from plain arguments, one reply per batch."""

    def __init__(self, offset: int) -> None:
        self.offset = offset

    def run(self, batch: list[int]) -> list[int]:
        return [x * x + self.offset for x in batch]


@pytest.mark.parametrize("count", [1, 2 * ROWS_PER_ACTOR, 2 * ROWS_PER_ACTOR + 5, 101])
def test_replies_come_back_in_the_order_of_the_batches(local_ray, count: int) -> None:
    local_ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests
    batches = [list(range(i, i + (i % 3) + 1)) for i in range(count)]  # batches of 1 to 3 items
    expected = [Squares(7).run(batch) for batch in batches]
    assert map_on_actors(Squares, (7,), batches, workers=2) == expected


def test_no_batch_is_no_reply() -> None:
    assert map_on_actors(Squares, (0,), []) == []


class SquaresInRuns(Squares):
    """An actor that takes whole runs of batches, and says how long each run was."""

    def run_many(self, batches: list[list[int]]) -> list[tuple[int, list[int]]]:
        return [(len(batches), self.run(batch)) for batch in batches]


def test_an_actor_that_takes_runs_gets_consecutive_batches_together(local_ray) -> None:
    local_ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    count = 4 * 2 * ROWS_PER_ACTOR + 3  # two actors: 16 rows of 4 or 5 batches
    batches = [[i] for i in range(count)]
    replies = map_on_actors(SquaresInRuns, (1,), batches, workers=2)
    assert [reply for _, reply in replies] == [[i * i + 1] for i in range(count)]
    assert sorted({length for length, _ in replies}) == [4, 5]


def test_a_ray_client_address_is_refused_in_one_sentence() -> None:
    with pytest.raises(BadInputError, match="Ray Client addresses .ray://head:10001. do not carry.*--address auto"):
        check_engine("ray", "ray://head:10001")
    check_engine("ray", "auto")  # a node of the cluster finds it


def test_a_cluster_that_cannot_be_reached_is_named_in_one_sentence(monkeypatch) -> None:
    ray = pytest.importorskip("ray")

    def unreachable(**kwargs):
        raise ConnectionError(f"Failed to connect to Ray cluster at {kwargs['address']}\nmore lines")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", unreachable)
    with pytest.raises(BadInputError) as caught:
        with ray_session("head:6379"):
            pass
    assert str(caught.value) == ("could not connect to the Ray cluster at head:6379 (Failed to connect to Ray "
                                 "cluster at head:6379); on a node of the cluster, --address auto finds it")
