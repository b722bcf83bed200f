"""Frequent itemsets (exact, vectorised) and association rules.

The counting engine (:func:`frequent_itemsets`) is exact and has no Python loop over baskets:

1. **Items**: de-duplicate (basket, item) pairs, count items with ``bincount``; keep the frequent
   ones and re-number them densely (most frequent first).
2. **Pairs**: baskets are grouped by how many frequent items they hold (``m``); for each group the
   ``m × (m − 1) / 2`` pairs of every basket come from one fancy-indexing step over a
   ``(baskets, m)`` item matrix, are encoded as ``i · n + j`` and counted with ``bincount``, in
   chunks that bound memory.
3. **Triples**: only items that occur in a frequent pair can be in a frequent triple (Apriori), so
   baskets are cut down to those items; every triple of such a basket whose three sub-pairs are
   all frequent is a candidate occurrence; candidates are mapped to a compact index with
   ``searchsorted`` and counted with ``bincount``.

The output has mlxtend's format (``support``, ``itemsets`` as ``frozenset``), and the rule metrics
come from :func:`mlxtend.frequent_patterns.association_rules`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from basket_insights.arrays import factorize_ids
from basket_insights.config import Settings
from basket_insights.lake import Lake

log = logging.getLogger(__name__)

_CHUNK_PAIRS = 20_000_000  # pair occurrences materialised at once (bounds peak memory)


@dataclass(frozen=True)
class Baskets:
    """Baskets in CSR form: basket ``b`` holds ``items[indptr[b]:indptr[b + 1]]`` (item ids ≥ 0)."""

    indptr: np.ndarray
    items: np.ndarray

    @property
    def n_baskets(self) -> int:
        return len(self.indptr) - 1

    @classmethod
    def from_pairs(cls, basket_ids: np.ndarray, item_ids: np.ndarray) -> Baskets:
        """Build from parallel arrays of basket and item ids (any order, duplicates allowed).

        Baskets are numbered densely in sorted order of ``basket_ids``; items keep their order
        within a basket (the engine does not need them sorted).
        """
        basket_codes, uniques = factorize_ids(basket_ids)
        order = _group_order(basket_codes, len(uniques))
        if order is not None:
            item_ids = np.asarray(item_ids)[order]
        counts = np.bincount(basket_codes, minlength=len(uniques))
        indptr = np.zeros(len(uniques) + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(indptr, np.asarray(item_ids))

    @classmethod
    def from_lists(cls, baskets: list[list[int]]) -> Baskets:
        lengths = np.array([len(b) for b in baskets], dtype=np.int64)
        indptr = np.zeros(len(baskets) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        items = np.fromiter((i for b in baskets for i in b), dtype=np.int64, count=int(lengths.sum()))
        return cls(indptr, items)


def _group_order(codes: np.ndarray, n_groups: int) -> np.ndarray | None:
    """``np.argsort(codes, kind="stable")``, or None when ``codes`` are sorted already.

    Order lines come grouped (each basket's lines together, baskets in any order): then only the
    runs are sorted, not every line (at full scale ~0.5 s instead of ~3.5 s).
    """
    if len(codes) == 0:
        return None
    starts = np.concatenate(([0], np.flatnonzero(codes[1:] != codes[:-1]) + 1))
    run_codes = codes[starts]
    if (run_codes[1:] > run_codes[:-1]).all():
        return None
    if len(starts) != n_groups:  # some basket's lines are in several places
        return np.argsort(codes, kind="stable")
    by_code = np.argsort(run_codes)
    lengths = np.diff(np.append(starts, len(codes)))[by_code]
    # line i of the output is line (start of its run) + (i - where that run begins in the output)
    order = np.repeat(starts[by_code] - (np.cumsum(lengths) - lengths), lengths)
    step = 4_000_000  # the positions are added a slice at a time: no second line-sized array
    for start in range(0, len(order), step):
        order[start : start + step] += np.arange(start, min(start + step, len(order)))
    return order


def _size_groups(codes: np.ndarray, indptr: np.ndarray, sentinel: int) -> dict[int, np.ndarray]:
    """``{m: (baskets with m entries, m) matrix}``; each row sorted, repeats replaced by ``sentinel``.

    ``codes``/``indptr`` are CSR baskets. Baskets with fewer than 2 entries are left out.
    """
    sizes = np.diff(indptr)
    groups = {}
    for m in np.unique(sizes):
        if m < 2:
            continue
        which = np.flatnonzero(sizes == m)
        matrix = np.sort(codes[indptr[which][:, None] + np.arange(m)], axis=1)
        repeat = np.zeros(matrix.shape, dtype=bool)
        repeat[:, 1:] = matrix[:, 1:] == matrix[:, :-1]
        matrix[repeat] = sentinel
        groups[int(m)] = matrix
    return groups


def _compact(
    groups: dict[int, np.ndarray], keep: np.ndarray, local: np.ndarray, sentinel: int
) -> dict[int, np.ndarray]:
    """Re-code every row with ``local`` (items not in ``keep`` become ``sentinel``), drop them, regroup by new size."""
    out: dict[int, list[np.ndarray]] = {}
    for matrix in groups.values():
        if matrix.shape[1] < 3:
            continue
        valid = matrix < len(keep)
        valid[valid] = keep[matrix[valid]]
        sizes = valid.sum(axis=1)
        rows = sizes >= 3  # only these can hold a triple: recode and sort just them
        matrix, valid, sizes = matrix[rows], valid[rows], sizes[rows]
        recoded = np.where(valid, local[np.minimum(matrix, len(local) - 1)], sentinel)
        recoded.sort(axis=1)  # sentinel is the largest code: kept items come first, still ascending
        for m in np.unique(sizes):
            out.setdefault(int(m), []).append(recoded[sizes == m, :m])
    return {m: np.concatenate(parts) for m, parts in out.items()}


def _count_pairs(matrices: list[np.ndarray], width: int, threads: int = 2) -> np.ndarray:
    """Counts of every pair ``(i, j)``, ``i < j``, over the rows of the row-sorted matrices: ``width²`` array.

    Work is cut into blocks of about ``_CHUNK_PAIRS`` pair occurrences and spread over ``threads``
    (numpy's fancy indexing and ``bincount`` release the GIL), each thread with its own counts.
    """
    from concurrent.futures import ThreadPoolExecutor

    key_type = np.int32 if width * width < 2**31 else np.int64
    blocks = []
    for matrix in matrices:
        a, b = np.triu_indices(matrix.shape[1], k=1)
        step = max(1, _CHUNK_PAIRS // (2 * len(a)))
        blocks += [(matrix[start : start + step], a, b) for start in range(0, len(matrix), step)]

    def count(part: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
        counts = np.zeros(width * width, dtype=np.int64)
        for block, a, b in part:
            block = block.astype(key_type)
            keys = block[:, a]
            keys *= width
            keys += block[:, b]
            counts += np.bincount(keys.ravel(), minlength=width * width)
        return counts

    parts = [blocks[i::threads] for i in range(threads)]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return sum(pool.map(count, parts))


def item_occurrences(baskets: Baskets) -> np.ndarray:
    """Lines per item id (``bincount``): an upper bound of the baskets holding each item. Over user
    shards the occurrences add up, padded to the longest."""
    items = np.asarray(baskets.items)
    if len(items) and items.min() < 0:
        raise ValueError("item ids must be >= 0")
    return np.bincount(items) if len(items) else np.zeros(0, dtype=np.int64)


def support_threshold(n_baskets: int, min_support: float, min_count: int) -> int:
    """The baskets an itemset needs: ``min_support`` of them, at least ``min_count`` and 1."""
    return max(int(np.ceil(min_support * n_baskets - 1e-9)), int(min_count), 1)


def coded_groups(baskets: Baskets, candidates: np.ndarray) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """The baskets re-coded to the ``candidates``' dense codes (other items dropped), as size groups
    (:func:`_size_groups`), and the code of every basket left with exactly one candidate."""
    n1 = len(candidates)
    items = np.asarray(baskets.items)
    n_baskets = baskets.n_baskets
    size = max(int(items.max(initial=-1)) + 1, int(candidates.max(initial=-1)) + 1)
    code_of = np.full(size, n1, dtype=np.int32)  # n1 = "not a candidate"
    code_of[candidates] = np.arange(n1, dtype=np.int32)
    codes = code_of[items]
    valid = codes < n1
    # the new CSR offsets from the valid entries per basket (reduceat over non-empty baskets only)
    per_basket = np.zeros(n_baskets, dtype=np.int64)
    nonempty = np.flatnonzero(np.diff(baskets.indptr) > 0)
    per_basket[nonempty] = np.add.reduceat(valid.view(np.int8), baskets.indptr[nonempty], dtype=np.int64)
    indptr = np.zeros(n_baskets + 1, dtype=np.int64)
    np.cumsum(per_basket, out=indptr[1:])
    codes = codes[valid]
    groups = _size_groups(codes, indptr, sentinel=n1)
    singles = codes[indptr[np.flatnonzero(np.diff(indptr) == 1)]]
    return groups, singles


def count_items_and_pairs(
    groups: dict[int, np.ndarray], singles: np.ndarray, n1: int, pairs: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Exact baskets per candidate (``n1``) and, with ``pairs``, per candidate pair (``n1 × n1``,
    ``i < j`` above the diagonal) of :func:`coded_groups`' output; over user shards they add up."""
    width = n1 + 1
    item_counts = np.bincount(singles, minlength=width)
    for matrix in groups.values():
        item_counts += np.bincount(matrix.ravel(), minlength=width)
    pair_counts = _count_pairs(list(groups.values()), width).reshape(width, width)[:n1, :n1] if pairs else None
    return item_counts[:n1], pair_counts


@dataclass(frozen=True)
class TriplePlan:
    """The candidate triples (Apriori: all three sub-pairs frequent) of the frequent pairs ``pi < pj``
    (codes among ``n1`` candidates), keyed for counting: only items of some frequent pair matter."""

    in_pair: np.ndarray  # (n1,) bool: the item is in a frequent pair
    local: np.ndarray  # (n1,) its code among those items (n2 when not)
    frequent_pair: np.ndarray  # (n2 + 1, n2 + 1) bool
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    keys: np.ndarray  # ascending (a · n2 + b) · n2 + c

    @property
    def n2(self) -> int:
        return len(self.frequent_pair) - 1


def plan_triples(pi: np.ndarray, pj: np.ndarray, n1: int) -> TriplePlan | None:
    """:class:`TriplePlan` of the frequent pairs, or ``None`` when no triple can be frequent."""
    in_pair = np.zeros(n1, dtype=bool)
    in_pair[pi] = True
    in_pair[pj] = True
    sub = np.flatnonzero(in_pair)  # codes of items in some frequent pair, ascending
    n2 = len(sub)
    local = np.full(n1, n2, dtype=np.int64)
    local[sub] = np.arange(n2)
    frequent_pair = np.zeros((n2 + 1, n2 + 1), dtype=bool)
    frequent_pair[local[pi], local[pj]] = True
    # candidates a < b < c with ab, ac, bc frequent, as sorted keys
    cand_a, cand_b, cand_c = [], [], []
    for a, b in zip(*np.nonzero(frequent_pair[:n2, :n2]), strict=True):
        cs = np.flatnonzero(frequent_pair[a, :n2] & frequent_pair[b, :n2])
        cs = cs[cs > b]
        if len(cs):
            cand_a.append(np.full(len(cs), a))
            cand_b.append(np.full(len(cs), b))
            cand_c.append(cs)
    if not cand_a:
        return None
    ca, cb, cc = np.concatenate(cand_a), np.concatenate(cand_b), np.concatenate(cand_c)
    keys = (ca * n2 + cb) * n2 + cc  # ascending: generated in (a, b, c) order
    return TriplePlan(in_pair, local, frequent_pair, ca, cb, cc, keys)


def count_triples(groups: dict[int, np.ndarray], plan: TriplePlan) -> np.ndarray:
    """Exact baskets holding each of ``plan``'s candidate triples; over user shards they add up."""
    n2, frequent_pair = plan.n2, plan.frequent_pair
    counts = np.zeros(len(plan.keys), dtype=np.int64)
    for m, matrix in _compact(groups, plan.in_pair, plan.local, sentinel=n2).items():
        ia, ib, ic = (np.array(x) for x in zip(*_triples(m), strict=True))
        step = max(1, _CHUNK_PAIRS // len(ia))
        for start in range(0, len(matrix), step):
            block = matrix[start : start + step]
            a, b, c = block[:, ia].ravel(), block[:, ib].ravel(), block[:, ic].ravel()
            ok = frequent_pair[a, b] & frequent_pair[a, c] & frequent_pair[b, c]
            keys = (a[ok] * n2 + b[ok]) * n2 + c[ok]
            counts += np.bincount(np.searchsorted(plan.keys, keys), minlength=len(plan.keys))
    return counts


def itemsets_frame(
    candidates: np.ndarray,
    item_counts: np.ndarray,
    pair_counts: np.ndarray | None,
    triples: tuple[TriplePlan, np.ndarray] | None,
    threshold: int,
    n_baskets: int,
) -> pd.DataFrame:
    """:func:`frequent_itemsets`' table from the exact counts (summed over shards or not)."""
    columns = ["support", "itemsets", "count", "length"]
    frequent_items = np.flatnonzero(item_counts >= threshold)
    out = [
        pd.DataFrame({"items": [(int(candidates[i]),) for i in frequent_items], "count": item_counts[frequent_items]})
    ]
    if pair_counts is not None:
        pi, pj = frequent_pairs(pair_counts, threshold)
        out.append(
            pd.DataFrame(
                {
                    "items": list(zip(candidates[pi].tolist(), candidates[pj].tolist(), strict=True)),
                    "count": pair_counts[pi, pj],
                }
            )
        )
    if triples is not None:
        plan, counts = triples
        hit = counts >= threshold
        to_item = candidates[np.flatnonzero(plan.in_pair)]
        items = zip(*(to_item[x[hit]].tolist() for x in (plan.a, plan.b, plan.c)), strict=True)
        out.append(pd.DataFrame({"items": list(items), "count": counts[hit]}))
    result = pd.concat(out, ignore_index=True)
    result["support"] = result["count"] / n_baskets
    result["itemsets"] = [frozenset(t) for t in result["items"]]
    result["length"] = [len(t) for t in result["items"]]
    result = result.sort_values(["length", "count", "items"], ascending=[True, False, True], kind="stable")
    return result[columns].reset_index(drop=True)


def frequent_pairs(pair_counts: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes ``(i, j)``, ``i < j``, of the candidate pairs in at least ``threshold`` baskets."""
    return np.nonzero(pair_counts >= threshold)


def frequent_itemsets(
    baskets: Baskets,
    min_support: float,
    max_len: int = 3,
    min_count: int = 1,
) -> pd.DataFrame:
    """Exact frequent itemsets of up to ``max_len`` (1–3) items.

    Parameters
    ----------
    baskets:
        The transactions; repeated items in a basket count once; empty baskets count in the total.
    min_support:
        Minimum share of baskets (0 < s ≤ 1) containing the itemset.
    max_len:
        Largest itemset size (1, 2 or 3).
    min_count:
        Also require at least this many baskets (guards against rules from a handful of baskets).

    Returns
    -------
    pandas.DataFrame
        mlxtend's format: ``support`` (float) and ``itemsets`` (``frozenset`` of item ids), plus
        ``count`` (baskets) and ``length``; sorted by length, then count descending, then items.
    """
    check_itemset_settings(min_support, max_len)
    started = time.monotonic()
    n_baskets = baskets.n_baskets
    if n_baskets == 0 or len(baskets.items) == 0:
        return no_itemsets()
    threshold = support_threshold(n_baskets, min_support, min_count)
    # 1. Occurrences bound basket counts from above: items seen fewer times cannot be frequent.
    candidates = np.flatnonzero(item_occurrences(baskets) >= threshold)
    if len(candidates) == 0:
        return no_itemsets()
    # 2. Exact item and pair counts from row-sorted, de-duplicated size groups.
    groups, singles = coded_groups(baskets, candidates)
    item_counts, pair_counts = count_items_and_pairs(groups, singles, len(candidates), max_len >= 2)
    # 3. Triples of items whose three sub-pairs are frequent.
    triples = None
    if max_len >= 3:
        plan = plan_triples(*frequent_pairs(pair_counts, threshold), len(candidates))
        triples = (plan, count_triples(groups, plan)) if plan is not None else None
    result = itemsets_frame(candidates, item_counts, pair_counts, triples, threshold, n_baskets)
    log.debug(
        "frequent_itemsets: %d itemsets from %d baskets in %.2f s", len(result), n_baskets, time.monotonic() - started
    )
    return result


def no_itemsets() -> pd.DataFrame:
    """:func:`frequent_itemsets`' table when nothing is frequent."""
    return pd.DataFrame({c: [] for c in ("support", "itemsets", "count", "length")})


def check_itemset_settings(min_support: float, max_len: int) -> None:
    """Refuse a minimum support outside (0, 1] or itemsets not of 1–3 items."""
    if not 0 < min_support <= 1:
        raise ValueError(f"min_support must be in (0, 1], got {min_support}")
    if max_len not in (1, 2, 3):
        raise ValueError(f"max_len must be 1, 2 or 3, got {max_len}")


def _triples(m: int) -> list[tuple[int, int, int]]:
    return [(a, b, c) for a in range(m) for b in range(a + 1, m) for c in range(b + 1, m)]


def synthetic_workload(
    n_baskets: int = 3_214_874, n_items: int = 49_677, mean_size: float = 10.3, seed: int = 0, exponent: float = 1.0
) -> Baskets:
    """A basket workload of Instacart's size: negative-binomial basket sizes, Zipf-like item popularity.

    Items are drawn independently (weight ∝ 1/(rank + 25)^exponent); repeats inside a basket are kept
    (the engine counts each item once per basket).
    """
    rng = np.random.default_rng(seed)
    sizes = 1 + rng.negative_binomial(2, 2.0 / (2.0 + mean_size - 1.0), size=n_baskets)
    weights = 1.0 / (np.arange(n_items) + 25.0) ** exponent
    cdf = np.cumsum(weights / weights.sum())
    items = np.searchsorted(cdf, rng.random(int(sizes.sum())) * cdf[-1]).astype(np.int32)
    np.clip(items, 0, n_items - 1, out=items)
    indptr = np.zeros(n_baskets + 1, dtype=np.int64)
    np.cumsum(sizes, out=indptr[1:])
    return Baskets(indptr, items)


@dataclass(frozen=True)
class RuleSettings:
    """Mining thresholds. Defaults chosen on the full-scale feed (docs/rules.md)."""

    min_support: float = 0.001
    min_count: int = 10
    max_len: int = 3
    min_confidence: float = 0.1
    min_lift: float = 1.2
    last_days: int = 0  # 0: every prior order up to ds

    @classmethod
    def from_settings(cls, settings: Settings) -> RuleSettings:
        return cls(
            min_support=settings.rules_min_support,
            min_count=settings.rules_min_count,
            min_confidence=settings.rules_min_confidence,
            min_lift=settings.rules_min_lift,
            last_days=settings.rules_last_days,
        )


def association_rules(itemsets: pd.DataFrame, n_baskets: int, settings: RuleSettings) -> pd.DataFrame:
    """Rules ``antecedents -> consequents`` with mlxtend's metrics, filtered by confidence and lift.

    ``itemsets`` is the output of :func:`frequent_itemsets` (mlxtend's format).
    """
    from mlxtend.frequent_patterns import association_rules as mlxtend_rules

    metric_columns = [
        "antecedent support",
        "consequent support",
        "support",
        "confidence",
        "lift",
        "leverage",
        "conviction",
    ]
    if len(itemsets) == 0 or (itemsets["length"] > 1).sum() == 0:
        return pd.DataFrame(columns=["antecedents", "consequents", *metric_columns])
    rules = mlxtend_rules(
        itemsets[["support", "itemsets"]],
        num_itemsets=n_baskets,
        metric="confidence",
        min_threshold=settings.min_confidence,
        return_metrics=metric_columns,
    )
    rules = rules[rules["lift"] >= settings.min_lift]
    rules = rules.sort_values(["lift", "confidence"], ascending=False, kind="stable").reset_index(drop=True)
    return rules[["antecedents", "consequents", *metric_columns]]


def mine(baskets: Baskets, settings: RuleSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Frequent itemsets and rules of ``baskets``; rules as stored in gold.

    Returns the itemsets (mlxtend's format) and the rules with ``antecedents``/``consequents`` as
    sorted lists of product ids and the metrics named with underscores (``antecedent_support`` …).
    """
    itemsets = frequent_itemsets(baskets, settings.min_support, settings.max_len, settings.min_count)
    return itemsets, rules_table(itemsets, baskets.n_baskets, settings)


def rules_table(itemsets: pd.DataFrame, n_baskets: int, settings: RuleSettings) -> pd.DataFrame:
    """:func:`association_rules` of the itemsets, as :func:`mine` returns them."""
    rules = association_rules(itemsets, n_baskets, settings)
    return pd.DataFrame(
        {
            "antecedents": [sorted(s) for s in rules["antecedents"]],
            "consequents": [sorted(s) for s in rules["consequents"]],
            **{c.replace(" ", "_"): rules[c].astype(float).to_numpy() for c in rules.columns[2:]},
        }
    )


def first_of_last_days(ds: str, last_days: int) -> str:
    """The first date of the ``last_days`` days ending ``ds``."""
    from datetime import date, timedelta

    return (date.fromisoformat(ds) - timedelta(days=last_days - 1)).isoformat()


def baskets_as_of(lake: Lake, ds: str, last_days: int = 0) -> Baskets:
    """The prior orders ``<= ds`` (optionally of the last ``last_days`` days) as baskets of product ids
    (one user shard's: :func:`basket_insights.itemset_shards.shard_baskets`)."""
    dates = lake.partitions("bronze", "orders", up_to=ds)
    if last_days:
        dates = [d for d in dates if d >= first_of_last_days(ds, last_days)]
    orders = lake.read_table("bronze", "orders", dates=dates, columns=["order_id", "eval_set"])
    lines = lake.read_table("bronze", "order_products", dates=dates, columns=["order_id", "product_id"])
    return prior_baskets(orders, lines)


def prior_baskets(orders: pa.Table, lines: pa.Table) -> Baskets:
    """The ``lines`` (``order_id, product_id``) of the prior ``orders`` (``order_id, eval_set``) as baskets."""
    prior = orders.filter(pc.equal(orders.column("eval_set"), "prior")).column("order_id")
    lines = lines.filter(pc.is_in(lines.column("order_id"), value_set=prior.combine_chunks()))
    return Baskets.from_pairs(lines.column("order_id").to_numpy(), lines.column("product_id").to_numpy())


def _named(ids: frozenset, names: pd.Series) -> list[str]:
    return [str(names.get(i, f"product {i}")) for i in sorted(ids)]


_METRICS = ("antecedent_support", "consequent_support", "support", "confidence", "lift", "leverage", "conviction")
#: Written schemas: the same types on a day with no rules (an empty frame has no list types to infer).
RULE_SCHEMA = pa.schema(
    [("antecedents", pa.list_(pa.int64())), ("consequents", pa.list_(pa.int64())),
     ("antecedent_names", pa.list_(pa.string())), ("consequent_names", pa.list_(pa.string())),
     *[(name, pa.float64()) for name in _METRICS]]
)  # fmt: skip
ITEMSET_SCHEMA = pa.schema(
    [("items", pa.list_(pa.int64())), ("item_names", pa.list_(pa.string())), ("length", pa.int8()),
     ("count", pa.int64()), ("support", pa.float64())]
)  # fmt: skip


def _arrow(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    return schema.empty_table() if frame.empty else pa.Table.from_pandas(frame, schema, preserve_index=False)


def run_mine_rules(
    lake: Lake,
    ds: str,
    settings: RuleSettings,
    *,
    shards: int = 1,
    dask_address: str | None = None,
    run_id: str = "",
) -> dict:
    """Mine ``frequent_itemsets`` and ``association_rules`` (with product names) for ``ds``: from the
    bronze history in this process, or counted over ``shards`` user shards
    (:func:`basket_insights.itemset_shards.sharded_itemsets`, the same itemsets)."""
    from basket_insights.ingest import product_names

    started = time.monotonic()
    if shards == 1:
        baskets = baskets_as_of(lake, ds, settings.last_days)
        n_baskets, n_lines = baskets.n_baskets, len(baskets.items)
        seconds = time.monotonic() - started
        log.info("mine_rules ds=%s: %d baskets, %d lines read (%.1f s)", ds, n_baskets, n_lines, seconds)
        counted = time.monotonic()
        itemsets, rules = mine(baskets, settings)
        del baskets
    else:
        from basket_insights.itemset_shards import sharded_itemsets

        counted = time.monotonic()
        itemsets, n_baskets, n_lines = sharded_itemsets(lake, ds, settings, shards, dask_address=dask_address)
        rules = rules_table(itemsets, n_baskets, settings)
    log.info("mine_rules ds=%s: %d frequent itemsets (min support %g, min count %d) and rules in %.1f s", ds,
             len(itemsets), settings.min_support, settings.min_count, time.monotonic() - counted)  # fmt: skip
    names = product_names(lake, ds)
    itemset_table = pd.DataFrame(
        {
            "items": [sorted(s) for s in itemsets["itemsets"]],
            "item_names": [_named(s, names) for s in itemsets["itemsets"]],
            "length": itemsets["length"].astype(np.int8),
            "count": itemsets["count"].astype(np.int64),
            "support": itemsets["support"].astype(float),
        }
    )
    rule_table = rules.copy()
    rule_table.insert(2, "antecedent_names", [_named(s, names) for s in rules["antecedents"]])
    rule_table.insert(3, "consequent_names", [_named(s, names) for s in rules["consequents"]])
    extra = {"baskets": n_baskets, "settings": settings.__dict__}
    lake.write_table("gold", "frequent_itemsets", ds, _arrow(itemset_table, ITEMSET_SCHEMA),
                     run_id=run_id, extra=extra)  # fmt: skip
    lake.write_table("gold", "association_rules", ds, _arrow(rule_table, RULE_SCHEMA),
                     run_id=run_id, extra=extra)  # fmt: skip
    top = rule_table.head(3)
    log.info("mine_rules ds=%s: %d rules (confidence >= %g, lift >= %g); top: %s (%.1f s)", ds, len(rule_table),
             settings.min_confidence, settings.min_lift,
             [f"{a} -> {c} (lift {lift:.1f})" for a, c, lift in
              zip(top["antecedent_names"], top["consequent_names"], top["lift"], strict=True)],
             time.monotonic() - started)  # fmt: skip
    return {
        "rows_in": n_lines,
        "rows_out": len(itemset_table) + len(rule_table),
        "shards": shards,
        "baskets": n_baskets,
        "itemsets": len(itemset_table),
        "rules": len(rule_table),
    }
