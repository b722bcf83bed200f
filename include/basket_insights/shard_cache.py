"""What a step reads of each user shard, kept on the task's local disk between the step's passes.

A sharded step makes several passes over its shards (one per reduce: :mod:`basket_insights.shard_map`),
and each pass needs the same shard history, often with each customer's last orders split off. In the
task's own process the first pass keeps what it read and derived as uncompressed Arrow files in a
temporary folder, and the later passes read them back in a fraction of the time it takes to read the
shard from the lake and split it again; the folder goes when the step ends. Memory is unchanged (a
pass still holds one shard); the disk holds each kept shard once, about 150 MB a shard at 1×
Instacart with 8 shards. On a Dask cluster the passes of one shard may run on different workers, so
nothing is kept there: each pass reads its shard again.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather

#: What a kept entry holds: frames (of numpy columns), missing frames and counts.
Kept = tuple[pd.DataFrame | int | None, ...]


@dataclass(frozen=True)
class ShardCache:
    """A step's folder of kept shard inputs; ``folder`` None keeps nothing (every call makes its value)."""

    folder: str | None = None

    def keep(self, key: str, make: Callable[[], Kept]) -> Kept:
        """``make()``, or what it returned the first time under ``key`` in this step.

        Frames come back with the dtypes they were kept with, as numpy columns of their own (not tied
        to the file, which goes with the step).
        """
        if self.folder is None:
            return make()
        folder = Path(self.folder)
        index = folder / f"{key}.json"
        if index.exists():
            kinds = json.loads(index.read_text())
            return tuple(
                _read(folder / f"{key}-{i}.arrow") if kind == "frame" else kind for i, kind in enumerate(kinds)
            )
        values = make()
        kinds = []
        for i, value in enumerate(values):
            if isinstance(value, pd.DataFrame):
                table = pa.Table.from_pandas(value, preserve_index=False)
                feather.write_feather(table, folder / f"{key}-{i}.arrow", compression="uncompressed")
                kinds.append("frame")
            else:
                kinds.append(value)
        index.write_text(json.dumps(kinds))  # last: an entry is complete once its index is there
        return values


def _read(path: Path) -> pd.DataFrame:
    table = feather.read_table(path, memory_map=True)
    return pd.DataFrame({name: table[name].to_numpy().copy() for name in table.column_names}, copy=False)


@contextmanager
def kept_shards(dask_address: str | None) -> Iterator[ShardCache]:
    """A step's :class:`ShardCache`: a temporary folder removed when the step ends, or none on Dask."""
    if dask_address:
        yield ShardCache()
        return
    with tempfile.TemporaryDirectory(prefix="basket-shards-") as folder:
        yield ShardCache(folder)
