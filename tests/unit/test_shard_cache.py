"""A step's shard inputs kept on local disk between its passes."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from basket_insights.shard_cache import ShardCache, kept_shards
from basket_insights.shard_map import map_shards


def test_a_kept_shard_comes_back_the_same_and_is_made_once() -> None:
    made = []
    lines = pd.DataFrame(
        {
            "user_id": np.array([3, 3, 9], np.int64),
            "order_number": np.array([1, 2, 1], np.int32),
            "share": np.array([0.5, 0.25, 1.0]),
        }
    )

    def make() -> tuple:
        made.append(1)
        return lines, None, 42

    with kept_shards(None) as cache:
        first = cache.keep("view-2-shard-0", make)
        again = cache.keep("view-2-shard-0", make)
        other = cache.keep("view-2-shard-1", make)
    assert len(made) == 2  # shard 0 once, shard 1 once
    pd.testing.assert_frame_equal(again[0], lines)  # same values and dtypes
    assert again[1:] == (None, 42) and first[1:] == other[1:] == (None, 42)


def _keep_on_worker(cache: ShardCache, shard: int) -> dict:
    """Keep shard ``shard``'s entry on the worker running it; say where it ran and whether it was made."""
    from distributed import get_worker

    made = []
    kept = cache.keep(f"view-0-shard-{shard}", lambda: made.append(1) or (pd.DataFrame({"shard": [shard]}),))
    worker = get_worker()
    return {
        "worker": worker.address,
        "made": bool(made),
        "value": int(kept[0]["shard"].iloc[0]),
        "folder": str(Path(worker.local_directory) / cache.worker_folder),
    }


def test_on_dask_every_pass_finds_its_shard_kept_on_the_worker_that_ran_it(dask_cluster) -> None:
    address, shards = dask_cluster.scheduler_address, 6
    with kept_shards(address) as cache:
        work = partial(_keep_on_worker, cache)
        first = map_shards(work, shards, label="first pass", address=address)
        second = map_shards(work, shards, label="second pass", address=address)
        folders = {done["folder"] for done in first}
        assert all(os.path.isdir(folder) for folder in folders)
    assert [done["value"] for done in second] == list(range(shards))
    assert len({done["worker"] for done in first}) == 2  # the shards are spread over both workers
    assert all(done["made"] for done in first)
    # each shard ran where its first pass ran, and found its entry there
    assert [(done["worker"], done["made"]) for done in second] == [(done["worker"], False) for done in first]
    assert not any(os.path.exists(folder) for folder in folders)  # removed from the workers with the step


def test_outside_a_dask_worker_a_workers_cache_keeps_nothing() -> None:
    made = []
    cache = ShardCache(worker_folder="basket-shards-test")
    assert cache.keeps
    for _ in range(2):
        cache.keep("view-0-shard-0", lambda: made.append(1) or (pd.DataFrame({"a": [1]}),))
    assert len(made) == 2 and not ShardCache().keeps


def test_the_folder_goes_with_the_step() -> None:
    with kept_shards(None) as cache:
        cache.keep("view-0-shard-0", lambda: (pd.DataFrame({"a": [1, 2]}),))
        folder = cache.folder
        assert folder is not None
    assert not os.path.exists(folder)
