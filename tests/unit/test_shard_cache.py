"""A step's shard inputs kept on local disk between its passes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from basket_insights.shard_cache import ShardCache, kept_shards


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


def test_on_dask_nothing_is_kept() -> None:
    made = []
    with kept_shards("tcp://scheduler:8786") as cache:
        assert cache == ShardCache()
        for _ in range(2):
            cache.keep("view-0-shard-0", lambda: made.append(1) or (pd.DataFrame({"a": [1]}),))
    assert len(made) == 2


def test_the_folder_goes_with_the_step() -> None:
    with kept_shards(None) as cache:
        cache.keep("view-0-shard-0", lambda: (pd.DataFrame({"a": [1, 2]}),))
        folder = cache.folder
        assert folder is not None
    import os

    assert not os.path.exists(folder)
