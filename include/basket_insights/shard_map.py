"""Run a step's user shards: one after another in the task's own process, or on a Dask cluster.

:func:`map_shards` calls ``work(shard)`` for every shard ``0 .. shards - 1`` and returns the results
in shard order. Without an address each shard runs in the calling process, one at a time, so a step
holds one shard's history at a time (bounded memory, no cluster). With the address of a
``dask.distributed`` scheduler (``BASKET_DASK_ADDRESS``, e.g. ``tcp://dask-scheduler:8786``) the
shards are submitted to it and run on its workers, which read and write the lake through the same
:class:`~basket_insights.lake.Lake` code as the task (so ``work`` must be picklable: a module-level
function, or a ``functools.partial`` of one, given the lake's URL and connection id rather than a
``Lake``). Every pass sends shard ``k`` to the same worker, the ``k % n``-th by address, where the
step keeps what it read (:mod:`basket_insights.shard_cache`). Dask computes a shard again on another
worker when the worker running it dies; an error inside ``work`` fails the step, and Airflow retries
the task.

Each shard's ``work`` returns a small ``dict`` (what it wrote, never the rows themselves); ``rows``
in it, when present, is logged with the progress: ``features: 3/8 shards done (25,771 rows, 4.2 s)``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

#: How long a step waits for the Dask scheduler to answer before it fails (and Airflow retries it).
CONNECT_TIMEOUT_S = 20.0


class DaskUnreachable(RuntimeError):
    """The Dask scheduler of ``BASKET_DASK_ADDRESS`` did not answer; the message names the address."""


def map_shards(
    work: Callable[[int], dict],
    shards: int,
    *,
    label: str,
    address: str | None = None,
    only: Sequence[int] | None = None,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
) -> list[dict]:
    """``[work(0), ..., work(shards - 1)]`` (or ``work`` of the shards ``only``, in that order): in this
    process when ``address`` is ``None``, else on the Dask scheduler at ``address``; progress is logged
    under ``label`` as shards finish."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    selected = list(range(shards) if only is None else only)
    if any(not 0 <= shard < shards for shard in selected):
        raise ValueError(f"shards {selected} are not all among 0 .. {shards - 1}")
    started = time.monotonic()
    progress = _Progress(label, len(selected), started)
    if not address:
        results = []
        for shard in selected:
            results.append(work(shard))
            progress.done(results[-1])
        return results
    return _map_on_dask(work, selected, address, connect_timeout_s, progress)


class _Progress:
    def __init__(self, label: str, shards: int, started: float) -> None:
        self.label, self.shards, self.started = label, shards, started
        self.finished, self.rows = 0, 0

    def done(self, result: dict) -> None:
        self.finished += 1
        self.rows += int(result.get("rows", 0)) if isinstance(result, dict) else 0
        log.info(
            "%s: %d/%d shards done (%d rows, %.1f s)",
            self.label,
            self.finished,
            self.shards,
            self.rows,
            time.monotonic() - self.started,
        )


def _map_on_dask(
    work: Callable[[int], dict], shards: list[int], address: str, connect_timeout_s: float, progress: _Progress
) -> list[dict]:
    from distributed import Client, as_completed

    try:
        client = Client(address, timeout=f"{connect_timeout_s}s", set_as_default=False)
    except OSError as exc:  # refused, unresolvable or timed out (TimeoutError is an OSError)
        raise DaskUnreachable(
            f"the Dask scheduler at {address} (BASKET_DASK_ADDRESS) did not answer within "
            f"{connect_timeout_s:.0f} s: {exc}"
        ) from exc
    with client:
        log.info("%s: %d shards submitted to the Dask scheduler at %s", progress.label, len(shards), address)
        workers = sorted(client.scheduler_info()["workers"])
        # Shard k to the same worker in every pass, where the step keeps it (basket_insights.shard_cache);
        # loosely, so that Dask runs it elsewhere when that worker is gone. pure=False: a re-run of the
        # step computes again (the lake may have changed), never reuses.
        futures = [client.submit(work, shard, pure=False, **_placement(shard, workers)) for shard in shards]
        shard_of = {future.key: shard for shard, future in zip(shards, futures, strict=True)}
        results: dict[int, dict] = {}
        for future, result in as_completed(futures, loop=client.loop, with_results=True):
            results[shard_of[future.key]] = result
            progress.done(result)
    return [results[shard] for shard in shards]


def _placement(shard: int, workers: list[str]) -> dict:
    """Where shard ``shard`` should run: the ``shard % n``-th worker, or anywhere when none is up yet."""
    if not workers:
        return {}
    return {"workers": [workers[shard % len(workers)]], "allow_other_workers": True}
