"""What a step reads of each user shard, kept on the task's local disk between the step's passes.

A sharded step makes several passes over its shards (one per reduce: :mod:`basket_insights.shard_map`),
and each pass needs the same shard history, often with each customer's last orders split off. In the
task's own process the first pass keeps what it read and derived as uncompressed Arrow files in a
temporary folder, and the later passes read them back in a fraction of the time it takes to read the
shard from the lake and split it again; the folder goes when the step ends. Memory is unchanged (a
pass still holds one shard); the disk holds each kept shard once, about 150 MB a shard at 1×
Instacart with 8 shards.

On a Dask cluster each worker keeps the shards it ran in a folder of the step's own under the
worker's local directory, and :func:`basket_insights.shard_map.map_shards` sends every pass's shard
``k`` to the same worker (the ``k % n``-th of the workers, by address; Dask may still run it
elsewhere, when that worker is gone or another one idles, and then the shard is read again: a
cache miss, never a different result). The step removes its folders from every worker when it ends
(and a worker's local directory goes with the worker).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather

log = logging.getLogger(__name__)

#: What a kept entry holds: frames (of numpy columns), missing frames and counts.
Kept = tuple[pd.DataFrame | int | None, ...]


@dataclass(frozen=True)
class ShardCache:
    """A step's folder of kept shard inputs: ``folder`` in the task's process, or on Dask the folder
    ``worker_folder`` under each worker's local directory; neither keeps nothing (every call makes its
    value)."""

    folder: str | None = None
    worker_folder: str | None = None

    @property
    def keeps(self) -> bool:
        """Whether entries are kept (then a value is worth making whole the first time)."""
        return self.folder is not None or self.worker_folder is not None

    def keep(self, key: str, make: Callable[[], Kept]) -> Kept:
        """``make()``, or what it returned the first time under ``key`` in this step.

        Frames come back with the dtypes they were kept with, as numpy columns of their own (not tied
        to the file, which goes with the step).
        """
        folder = self._folder()
        if folder is None:
            return make()
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

    def _folder(self) -> Path | None:
        if self.folder is not None:
            return Path(self.folder)
        if self.worker_folder is None:
            return None
        from distributed import get_worker

        try:
            worker = get_worker()
        except ValueError:  # called outside a Dask worker: nothing to keep it in
            return None
        folder = Path(worker.local_directory) / self.worker_folder
        folder.mkdir(exist_ok=True)
        return folder


def _read(path: Path) -> pd.DataFrame:
    table = feather.read_table(path, memory_map=True)
    return pd.DataFrame({name: table[name].to_numpy().copy() for name in table.column_names}, copy=False)


@contextmanager
def kept_shards(dask_address: str | None) -> Iterator[ShardCache]:
    """A step's :class:`ShardCache`: a temporary folder removed when the step ends, or on the Dask
    scheduler at ``dask_address`` a folder on each worker, removed from them all when the step ends."""
    if dask_address:
        name = f"basket-shards-{uuid.uuid4().hex}"
        try:
            yield ShardCache(worker_folder=name)
        finally:
            _remove_from_workers(dask_address, name)
        return
    with tempfile.TemporaryDirectory(prefix="basket-shards-") as folder:
        yield ShardCache(folder)


def _remove_from_workers(dask_address: str, name: str) -> None:
    from distributed import Client

    try:
        with Client(dask_address, timeout="20s", set_as_default=False) as client:
            # a worker gone meanwhile took its folder with it: nothing to report, the step is done
            client.run(_remove_worker_folder, name, on_error="ignore")
    except OSError as exc:  # the scheduler gone: the folders go with the workers' local directories
        log.warning("could not remove the kept shards %s from the Dask workers at %s: %s", name, dask_address, exc)


def _remove_worker_folder(name: str, dask_worker) -> None:
    shutil.rmtree(Path(dask_worker.local_directory) / name, ignore_errors=True)
