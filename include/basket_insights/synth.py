"""A realistic synthetic Instacart-shaped daily feed, at any scale, deterministic for a seed.

What is planted (and written to ``_truth/`` in the lake, which the pipeline never reads):

* **Shopper types** ``loyal`` / ``mixed`` / ``casual``: each type has its own gap between
  orders, basket size, share of repeat purchases and department tastes (:data:`SHOPPER_TYPES`).
* **Co-purchase bundles**: pairs ``A -> B`` where a basket holding ``A`` also gets ``B`` with a
  set probability (:func:`plant_bundles`).

How it matches the real data (figures in ``docs/data.md``): Zipf-like product popularity,
basket sizes with mean about 10 (median 8), reorder ratio about 0.59, days between orders
with spikes at 7 and at the cap of 30 and empty for a user's first order, the day-of-week and
hour-of-day shares of the real orders.

Users are simulated in chunks of up to :data:`CHUNK_USERS`, each chunk's arrays at once with numpy
(no Python loop over users or orders): the full Instacart scale (206,209 users, 3.8M orders and 37M
lines in a year) is one chunk and takes about a minute in 2.9 GB; five times that (1,031,045 users,
183M lines) takes about five minutes in 6.5 GB, much of it the finished chunks waiting for the writer.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from basket_insights.lake import Lake

log = logging.getLogger(__name__)

#: Share of orders by ``order_dow`` and by ``order_hour_of_day``, measured on the real random sample
#: of 10,000 orders (``samples/random/orders.random10000.csv``).
DOW_SHARE = np.array([0.1779, 0.1727, 0.1315, 0.1185, 0.1315, 0.1359, 0.1320])
HOUR_SHARE = np.array(
    [0.006, 0.003, 0.0021, 0.0014, 0.0013, 0.0034, 0.009, 0.0281, 0.0499, 0.0749, 0.0918, 0.0815,
     0.0766, 0.0844, 0.0823, 0.0795, 0.0784, 0.0705, 0.0518, 0.0389, 0.0303, 0.0227, 0.0207, 0.0115]
)  # fmt: skip


@dataclass(frozen=True)
class ShopperType:
    """Behaviour of one latent shopper type.

    ``gap_weekly`` / ``gap_monthly`` are the shares of gaps that are exactly 7 days / 30 days
    or more; the rest follow a negative binomial with mean ``gap_mean``. ``basket_mean`` is the
    mean order size before de-duplication; ``repeat`` the chance that a line comes from the
    user's own favourites; ``pool`` the mean number of favourites; ``tastes`` multiplies the
    popularity of products of the named departments.
    """

    name: str
    share: float
    gap_weekly: float
    gap_monthly: float
    gap_mean: float
    basket_mean: float
    repeat: float
    pool: int
    tastes: dict[str, float]


SHOPPER_TYPES = (
    ShopperType("loyal", 0.30, 0.09, 0.02, 7.0, 14.0, 0.90, 30, {"produce": 1.8, "dairy eggs": 1.6}),
    ShopperType("mixed", 0.40, 0.07, 0.11, 11.0, 11.0, 0.78, 40, {"pantry": 1.4, "bakery": 1.4}),
    ShopperType("casual", 0.30, 0.03, 0.44, 16.0, 7.5, 0.56, 25, {"snacks": 2.0, "frozen": 1.8, "beverages": 1.6}),
)

MAX_ORDERS_PER_USER = 100  # as in the Kaggle snapshot


@dataclass(frozen=True)
class Catalog:
    """The three catalog tables."""

    products: pd.DataFrame  # product_id, product_name, aisle_id, department_id
    aisles: pd.DataFrame  # aisle_id, aisle
    departments: pd.DataFrame  # department_id, department
    #: Purchases seen per product (aligned with ``products``) in real order samples, if any.
    observed_counts: np.ndarray | None = None


def load_catalog(folder: str | Path) -> Catalog:
    """Read ``products.csv``, ``aisles.csv`` and ``departments.csv`` (Instacart format) from ``folder``."""
    folder = Path(folder)
    missing = [n for n in ("products.csv", "aisles.csv", "departments.csv") if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"catalog folder {folder} lacks {', '.join(missing)}")
    products = pd.read_csv(folder / "products.csv", dtype={"product_name": str}, keep_default_na=False)
    return Catalog(
        products=products,
        aisles=pd.read_csv(folder / "aisles.csv", keep_default_na=False),
        departments=pd.read_csv(folder / "departments.csv", keep_default_na=False),
        observed_counts=_observed_counts(folder, products["product_id"]),
    )


def _observed_counts(folder: Path, product_ids: pd.Series) -> np.ndarray | None:
    """Purchases per product in the real order samples beside a catalog (``samples/**/order_products*.csv``).

    They rank the popular products (Banana first, as in the real data); products never seen in
    the samples are ranked after them.
    """
    files = sorted(folder.glob("samples/**/order_products*.csv"))
    if not files:
        return None
    seen = pd.concat(
        [pd.read_csv(f, usecols=["product_id"], on_bad_lines="skip")["product_id"] for f in files], ignore_index=True
    )
    counts = pd.to_numeric(seen, errors="coerce").dropna().astype(np.int64).value_counts()
    return counts.reindex(product_ids.to_numpy(), fill_value=0).to_numpy(np.float64)


# -- a synthetic catalog of the real one's shape -------------------------------------------------

_DEPARTMENTS: dict[str, list[str]] = {
    "produce": ["apple", "banana", "spinach", "carrots", "avocado", "strawberries", "lemons", "cucumber", "kale",
                "onion", "blueberries", "broccoli", "tomatoes", "potatoes", "garlic", "peppers"],
    "dairy eggs": ["milk", "yogurt", "eggs", "cheddar", "butter", "cream cheese", "mozzarella", "kefir",
                   "half and half", "sour cream", "cottage cheese", "string cheese"],
    "snacks": ["tortilla chips", "crackers", "popcorn", "pretzels", "granola bars", "trail mix", "cookies",
               "potato chips", "fruit snacks", "rice cakes", "almonds", "cashews"],
    "beverages": ["sparkling water", "orange juice", "cold brew", "green tea", "cola", "lemonade", "kombucha",
                  "coconut water", "apple juice", "energy drink", "iced tea"],
    "frozen": ["pizza", "ice cream", "burritos", "waffles", "peas", "mixed berries", "dumplings", "meatballs",
               "fish sticks", "veggie burgers", "sorbet"],
    "pantry": ["olive oil", "pasta sauce", "black beans", "peanut butter", "honey", "rice", "flour", "sea salt",
               "maple syrup", "chickpeas", "coconut milk", "vinegar"],
    "bakery": ["sourdough bread", "bagels", "tortillas", "croissants", "muffins", "english muffins", "pita",
               "hamburger buns", "dinner rolls", "baguette"],
    "deli": ["hummus", "turkey breast", "salami", "guacamole", "salsa", "chicken salad", "ham", "pesto"],
    "meat seafood": ["chicken breast", "ground beef", "salmon fillet", "bacon", "pork chops", "shrimp",
                     "chicken thighs", "sausage"],
    "breakfast": ["oatmeal", "granola", "corn flakes", "pancake mix", "cereal", "muesli", "waffle mix"],
    "canned goods": ["diced tomatoes", "tuna", "chicken broth", "soup", "coconut cream", "sweet corn", "pumpkin"],
    "dry goods pasta": ["spaghetti", "penne", "macaroni", "quinoa", "couscous", "ramen", "lasagna sheets"],
    "household": ["paper towels", "dish soap", "trash bags", "laundry detergent", "sponges", "aluminum foil"],
    "personal care": ["shampoo", "toothpaste", "body wash", "deodorant", "lip balm", "throat drops", "lotion"],
    "babies": ["baby wipes", "diapers", "baby food pouch", "infant formula", "teething wafers"],
    "pets": ["dog food", "cat food", "cat litter", "dog treats", "bird seed"],
    "international": ["curry paste", "soy sauce", "tortilla wraps", "kimchi", "miso", "salsa verde"],
    "alcohol": ["red wine", "white wine", "lager", "cider", "ipa", "sparkling wine"],
    "bulk": ["bulk oats", "bulk almonds", "bulk lentils", "bulk raisins", "bulk coffee beans"],
    "other": ["gift card", "reusable bag", "candles", "batteries"],
    "missing": ["assorted item", "seasonal item", "miscellaneous"],
}  # fmt: skip
_AISLE_KINDS = ["fresh", "packaged", "specialty", "organic", "family size", "single serve", "value", "premium"]
_BRANDS = ["Green Valley", "Sunny Acres", "Blue Ridge", "Harvest Moon", "Oak & Stone", "Little Farm", "Northwind",
           "Prairie Gold", "Coastline", "Maple Lane", "Red Barn", "Silver Creek", "True North", "Wild Meadow",
           "Golden Hill", "Riverbend", "Hearth", "Simple Pantry", "Bright Day", "Cedar Grove"]  # fmt: skip
_ADJECTIVES = ["", "Organic", "Natural", "Lightly Salted", "Unsweetened", "Whole", "Classic", "Low Fat", "Spicy",
               "Honey", "Vanilla", "Original", "Gluten Free", "Sea Salt", "Smoked", "Roasted", "Fresh", "Mini",
               "Greek", "Wild", "Baby", "Crunchy", "Creamy", "Zesty"]  # fmt: skip
_SIZES = ["", "", "", "12 oz", "16 oz", "1 lb", "32 oz", "6 ct", "12 ct", "Family Size", "2 Pack", "8 oz"]


def synthetic_catalog(n_products: int = 49_688, n_aisles: int = 134, seed: int = 0) -> Catalog:
    """A catalog with the real one's shape: ``n_products`` plausible names in ``n_aisles`` aisles of 21 departments.

    Names combine a brand, an adjective, a department noun and a size, so products of one
    department share vocabulary (as real ones do) and TF-IDF can find them.
    """
    rng = np.random.default_rng(seed)
    departments = list(_DEPARTMENTS)
    dept_df = pd.DataFrame({"department_id": np.arange(1, len(departments) + 1), "department": departments})
    # Aisles: every department gets at least two, the rest in proportion to its vocabulary.
    weights = np.array([len(v) for v in _DEPARTMENTS.values()], dtype=float)
    per_dept = np.full(len(departments), 2)
    extra = n_aisles - per_dept.sum()
    per_dept += np.floor(weights / weights.sum() * extra).astype(int)
    per_dept[np.argsort(-weights)[: n_aisles - per_dept.sum()]] += 1
    aisle_rows = []
    for d, (dept, nouns) in enumerate(_DEPARTMENTS.items()):
        for k in range(per_dept[d]):
            noun = nouns[k % len(nouns)]
            kind = _AISLE_KINDS[(k // len(nouns) + k) % len(_AISLE_KINDS)]
            aisle_rows.append((d + 1, f"{kind} {noun}" if k >= 2 else (dept if k == 0 else f"{kind} {dept}")))
    aisles = pd.DataFrame({"aisle_id": np.arange(1, len(aisle_rows) + 1), "aisle": [a for _, a in aisle_rows]})
    aisle_dept = np.array([d for d, _ in aisle_rows])
    # Products: aisle chosen in proportion to aisle count per department; names built from parts.
    n_try = int(n_products * 1.6)
    aisle_idx = rng.integers(0, len(aisle_rows), n_try)
    dept_idx = aisle_dept[aisle_idx] - 1
    noun_choice = rng.integers(0, 1 << 30, n_try)
    brand = rng.integers(0, len(_BRANDS), n_try)
    adjective = rng.integers(0, len(_ADJECTIVES), n_try)
    size = rng.integers(0, len(_SIZES), n_try)
    names = []
    for i in range(n_try):
        nouns = _DEPARTMENTS[departments[dept_idx[i]]]
        parts = [
            _BRANDS[brand[i]],
            _ADJECTIVES[adjective[i]],
            nouns[noun_choice[i] % len(nouns)].title(),
            _SIZES[size[i]],
        ]
        names.append(" ".join(p for p in parts if p))
    frame = pd.DataFrame({"product_name": names, "aisle_id": aisle_idx + 1, "department_id": dept_idx + 1})
    frame = frame.drop_duplicates("product_name").head(n_products).reset_index(drop=True)
    if len(frame) < n_products:  # tiny vocabularies: make names unique with a variant number
        more = frame.sample(n_products - len(frame), replace=True, random_state=seed).reset_index(drop=True)
        more["product_name"] = more["product_name"] + " Variety " + (more.index + 2).astype(str)
        frame = pd.concat([frame, more], ignore_index=True)
    frame.insert(0, "product_id", np.arange(1, len(frame) + 1))
    return Catalog(frame, aisles, dept_df)


# -- orders ----------------------------------------------------------------------------------


def _popularity(catalog: Catalog, rng: np.random.Generator, exponent: float = 1.0) -> np.ndarray:
    """Zipf-like popularity, weight ~ 1/(rank+25)^s.

    Ranks follow the purchases observed in real samples when the catalog has them; otherwise
    (and among unseen products) they are random, with produce and dairy ranked higher.
    """
    n = len(catalog.products)
    dept_name = catalog.departments.set_index("department_id")["department"]
    depts = catalog.products["department_id"].map(dept_name).fillna("").to_numpy()
    boost = np.where(np.isin(depts, ["produce", "dairy eggs"]), 4.0, 1.0)
    score = rng.random(n) ** (1.0 / boost)  # in [0, 1); boosted products tend to score higher
    if catalog.observed_counts is not None:
        score = score + catalog.observed_counts
    ranks = np.empty(n, dtype=np.int64)
    ranks[np.argsort(-score)] = np.arange(n)
    weights = 1.0 / (ranks + 25.0) ** exponent
    return weights / weights.sum()


def _type_weights(catalog: Catalog, base: np.ndarray, shopper: ShopperType) -> np.ndarray:
    dept_name = catalog.departments.set_index("department_id")["department"]
    depts = catalog.products["department_id"].map(dept_name).fillna("").to_numpy()
    w = base.copy()
    for dept, factor in shopper.tastes.items():
        w[depts == dept] *= factor
    return w / w.sum()


def plant_bundles(
    popularity: np.ndarray, rng: np.random.Generator, n_bundles: int = 40, probability: float = 0.45
) -> pd.DataFrame:
    """Choose co-purchase pairs ``A -> B``: ``A`` among the 300 most popular products, ``B`` a mid-popular one.

    Returns a frame of ``antecedent, consequent, probability`` (indices into the catalog rows).
    """
    order = np.argsort(-popularity)
    heads = rng.choice(order[: min(300, len(order))], size=min(n_bundles, len(order) // 4), replace=False)
    pool = order[min(300, len(order)) : min(3000, len(order))]
    tails = rng.choice(pool if len(pool) >= len(heads) else order, size=len(heads), replace=False)
    return pd.DataFrame({"antecedent": heads, "consequent": tails, "probability": probability})


@dataclass(frozen=True)
class Tastes:
    """Personal taste: each customer a mixture over a few latent shopping interests.

    An interest is a set of products: those whose names carry a keyword (:data:`INTEREST_KEYWORDS`,
    "organic", "gluten free", "baby" …) or a random share ``aisle_product_share`` of the products of
    a few aisles (``aisles_per_interest``, drawn by popularity), named after them. Within an interest,
    products keep their relative popularity. Every customer draws interest weights from a symmetric
    Dirichlet with ``concentration`` (small: most customers lean on two or three interests), fixed for
    their whole history; a share ``strength`` of their favourites and of their exploring lines is drawn
    from their interests, the rest from their shopper type as before. Calibrated in docs/data.md.
    """

    interests: int = 24
    aisles_per_interest: int = 3
    aisle_product_share: float = 0.4
    concentration: float = 0.15
    strength: float = 0.8


#: Within an interest, products are drawn with weight popularity ** INTEREST_EXPONENT: flatter than
#: the catalogue's curve, so a taste leads to the interest's long tail as real tastes do.
INTEREST_EXPONENT = 0.75

#: Keywords of the named interests; kept when at least 30 products carry one.
INTEREST_KEYWORDS = ("organic", "gluten free", "vegan", "baby", "low fat", "greek", "spicy", "unsweetened")


def plant_interests(
    catalog: Catalog, base: np.ndarray, rng: np.random.Generator, tastes: Tastes
) -> list[tuple[str, np.ndarray]]:
    """The latent interests: ``(name, catalog rows)`` each, keyword interests first, then aisle groups."""
    names = catalog.products["product_name"].str.lower().to_numpy(dtype=str)
    found = []
    for keyword in INTEREST_KEYWORDS:
        rows = np.flatnonzero(np.char.find(names, keyword) >= 0)
        if len(rows) >= 30:
            found.append((keyword, rows))
    found = found[: tastes.interests // 2]
    aisle_of = catalog.products["aisle_id"].to_numpy()
    aisle_ids, aisle_code = np.unique(aisle_of, return_inverse=True)
    aisle_weight = np.bincount(aisle_code, weights=base, minlength=len(aisle_ids))
    aisle_name = catalog.aisles.set_index("aisle_id")["aisle"]
    while len(found) < tastes.interests and len(aisle_ids):
        size = min(tastes.aisles_per_interest, len(aisle_ids))
        picked = rng.choice(len(aisle_ids), size=size, replace=False, p=aisle_weight / aisle_weight.sum())
        in_aisles = np.flatnonzero(np.isin(aisle_code, picked))
        rows = in_aisles[rng.random(len(in_aisles)) < tastes.aisle_product_share]
        if len(rows) == 0:
            rows = in_aisles
        label = " + ".join(str(aisle_name.get(a, a)) for a in aisle_ids[picked])
        found.append((label, rows))
    return found


def _draw_from_interests(
    rng: np.random.Generator,
    owner: np.ndarray,
    weights: np.ndarray,
    interest_cdfs: list[tuple[np.ndarray, np.ndarray]],
) -> np.ndarray:
    """One catalog row per draw: an interest from the owner's weights, then a product from that interest."""
    cum = np.cumsum(weights, axis=1)
    cum /= cum[:, -1:]
    n_interests = weights.shape[1]
    flat = (cum + np.arange(len(weights))[:, None]).ravel()
    chosen = np.searchsorted(flat, owner + rng.random(len(owner)) * (1 - 1e-9)) - owner * n_interests
    chosen = np.clip(chosen, 0, n_interests - 1)
    out = np.empty(len(owner), dtype=np.int64)
    for i, (rows, cdf) in enumerate(interest_cdfs):
        mask = chosen == i
        picks = np.searchsorted(cdf, rng.random(int(mask.sum())) * cdf[-1])
        out[mask] = rows[np.minimum(picks, len(rows) - 1)]
    return out


@dataclass
class Feed:
    """A generated feed: orders (with ``order_date``) and order lines, plus the planted truth."""

    orders: pd.DataFrame
    lines: pd.DataFrame
    user_types: pd.DataFrame
    bundles: pd.DataFrame
    interests: pd.DataFrame  # interest_id, interest, products
    user_interests: pd.DataFrame  # user_id, interest_id, weight (weights of at least 1 %)


def _gaps(rng: np.random.Generator, shopper: ShopperType, shape: tuple[int, int]) -> np.ndarray:
    kind = rng.random(shape)
    # negative binomial, dispersion 2: mean gap_mean
    smooth = rng.negative_binomial(2, 2.0 / (2.0 + shopper.gap_mean), size=shape)
    monthly = 30 + rng.integers(0, 20, size=shape)
    gaps = np.where(
        kind < shopper.gap_weekly, 7, np.where(kind < shopper.gap_weekly + shopper.gap_monthly, monthly, smooth)
    )
    return gaps.astype(np.int32)


#: Users simulated together. Every intermediate array of a chunk grows with its users, so a chunk's
#: size bounds the generator's memory (about 4 GB a chunk); Instacart's 206,209 users are one chunk.
CHUNK_USERS = 250_000


@dataclass(frozen=True)
class Planted:
    """What every chunk of users shares: product popularity, the latent interests and the bundles."""

    popularity: np.ndarray
    interests: list[tuple[str, np.ndarray]]
    bundles: pd.DataFrame  # antecedent, consequent (catalog rows), probability


def generate_feed(
    catalog: Catalog,
    *,
    users: int,
    days: int,
    end_date: str,
    seed: int = 0,
    progress: bool = True,
    tastes: Tastes = Tastes(),
    chunk_users: int = CHUNK_USERS,
) -> Feed:
    """Generate orders and order lines for ``users`` over the ``days`` days ending ``end_date``.

    Shopping is simulated over at least a year (``max(days, 365)`` days) and only the last
    ``days`` are returned, so even a short feed starts mid-history, as a real feed does: users'
    first delivered orders are often not their first ever, and reorders refer to earlier buys.
    The chunks of :func:`feed_chunks`, joined; a large feed is better written chunk by chunk
    (:func:`generate` does).

    Returns
    -------
    Feed
        ``orders``: Instacart columns plus ``order_date``; ``lines``: Instacart order_products
        columns; ``user_types``: ``user_id, shopper_type``; ``bundles``: product ids and probability.
    """
    chunks = list(
        feed_chunks(
            catalog,
            users=users,
            days=days,
            end_date=end_date,
            seed=seed,
            progress=progress,
            tastes=tastes,
            chunk_users=chunk_users,
        )
    )
    if len(chunks) == 1:
        return chunks[0]
    return Feed(
        orders=pd.concat([c.orders for c in chunks], ignore_index=True),
        lines=pd.concat([c.lines for c in chunks], ignore_index=True),
        user_types=pd.concat([c.user_types for c in chunks], ignore_index=True),
        bundles=chunks[0].bundles,
        interests=chunks[0].interests,
        user_interests=pd.concat([c.user_interests for c in chunks], ignore_index=True),
    )


def feed_chunks(
    catalog: Catalog,
    *,
    users: int,
    days: int,
    end_date: str,
    seed: int = 0,
    progress: bool = True,
    tastes: Tastes = Tastes(),
    chunk_users: int = CHUNK_USERS,
) -> Iterator[Feed]:
    """The feed of :func:`generate_feed` as chunks of at most ``chunk_users`` consecutive users.

    The first chunk draws from the seed's stream, planting popularity, interests and bundles on
    the way, exactly as a feed of one chunk always has; every later chunk simulates its users with
    a stream of its own (``seed``, chunk number) and the first chunk's planted globals. Order ids
    stay unique across chunks. Each chunk's ``bundles`` and ``interests`` are the shared ones.
    """
    if chunk_users < 1:
        raise ValueError(f"chunk_users must be at least 1, got {chunk_users}")
    rng = np.random.default_rng(seed)
    planted = None
    orders_before = 0
    for number, first_user in enumerate(range(0, users, chunk_users)):
        chunk_rng = rng if number == 0 else np.random.default_rng([seed, number])
        feed, planted, simulated_orders = _simulate_users(
            catalog,
            chunk_rng,
            users=min(chunk_users, users - first_user),
            users_before=first_user,
            orders_before=orders_before,
            days=days,
            end_date=end_date,
            tastes=tastes,
            planted=planted,
            progress=progress,
        )
        orders_before += simulated_orders
        yield feed


def _simulate_users(
    catalog: Catalog,
    rng: np.random.Generator,
    *,
    users: int,
    users_before: int,
    orders_before: int,
    days: int,
    end_date: str,
    tastes: Tastes,
    planted: Planted | None,
    progress: bool,
) -> tuple[Feed, Planted, int]:
    """One chunk of users (ids after ``users_before``, order ids after ``orders_before``).

    With ``planted`` None the globals are planted from ``rng`` at the points of the stream they
    always were. Returns the chunk's feed, the planted globals and how many orders it simulated.
    Large per-line arrays are dropped as soon as they are used: they set the generator's peak memory.
    """
    started = time.monotonic()
    delivered_days, days = days, max(days, 365)
    end = date.fromisoformat(end_date)
    start = end - timedelta(days=days - 1)
    product_ids = catalog.products["product_id"].to_numpy(np.int64)
    base = planted.popularity if planted else _popularity(catalog, rng)

    # Users: a type each, a first order day (more users early, so histories are long).
    shares = np.array([t.share for t in SHOPPER_TYPES])
    user_type = rng.choice(len(SHOPPER_TYPES), size=users, p=shares / shares.sum())
    first_day = np.floor(days * rng.random(users) ** 1.5).astype(np.int32)

    # Orders: cumulative gaps from the first day, kept while inside the range.
    gaps = np.zeros((users, MAX_ORDERS_PER_USER), dtype=np.int32)
    for t, shopper in enumerate(SHOPPER_TYPES):
        rows = np.flatnonzero(user_type == t)
        gaps[rows, 1:] = _gaps(rng, shopper, (len(rows), MAX_ORDERS_PER_USER - 1))
    day_matrix = first_day[:, None] + np.cumsum(gaps, axis=1)
    valid = day_matrix < days
    n_orders_user = valid.sum(axis=1)
    user_idx = np.repeat(np.arange(users, dtype=np.int32), n_orders_user)
    order_day = day_matrix[valid]
    order_number = (np.cumsum(valid, axis=1)[valid]).astype(np.int32)
    days_since = np.where(order_number == 1, np.nan, np.minimum(gaps[valid], 30)).astype(np.float64)
    del gaps, day_matrix, valid
    n_orders = len(order_day)
    if progress:
        log.info(
            "generate: users %d-%d, %d orders planned (%.1f s)",
            users_before + 1,
            users_before + users,
            n_orders,
            time.monotonic() - started,
        )

    # Order attributes.
    order_dow = rng.choice(7, size=n_orders, p=DOW_SHARE / DOW_SHARE.sum())
    user_hour = rng.choice(24, size=users, p=HOUR_SHARE / HOUR_SHARE.sum())
    hour = np.where(
        rng.random(n_orders) < 0.6,
        user_hour[user_idx],
        rng.choice(24, size=n_orders, p=HOUR_SHARE / HOUR_SHARE.sum()),
    )
    order_ids = rng.permutation(n_orders).astype(np.int64) + 1 + orders_before
    types_of_orders = user_type[user_idx]

    # Basket sizes: 1 + negative binomial (dispersion 2) around the type's mean.
    basket_mean = np.array([t.basket_mean for t in SHOPPER_TYPES])[types_of_orders]
    sizes = 1 + rng.negative_binomial(2, 2.0 / (2.0 + basket_mean - 1.0))
    sizes = np.minimum(sizes, 80)
    n_lines = int(sizes.sum())
    line_order = np.repeat(np.arange(n_orders, dtype=np.int32), sizes)
    line_user = user_idx[line_order]
    line_type = types_of_orders[line_order].astype(np.int8)
    del sizes, basket_mean, types_of_orders
    if progress:
        log.info("generate: %d order lines planned (%.1f s)", n_lines, time.monotonic() - started)

    # Each user's favourites, drawn from the type's popularity; lines repeat favourites or explore.
    type_weights = [_type_weights(catalog, base, t) for t in SHOPPER_TYPES]
    pool_mean = np.array([t.pool for t in SHOPPER_TYPES])[user_type]
    pool_size = np.maximum(3, rng.poisson(pool_mean)).astype(np.int64)
    max_pool = int(pool_size.max())
    pools = np.empty((users, max_pool), dtype=np.int64)
    explore = np.empty(n_lines, dtype=np.int64)
    for t in range(len(SHOPPER_TYPES)):
        cdf = np.cumsum(type_weights[t])
        rows = np.flatnonzero(user_type == t)
        pools[rows] = np.searchsorted(cdf, rng.random((len(rows), max_pool)) * cdf[-1])
        mask = line_type == t
        explore[mask] = np.searchsorted(cdf, rng.random(int(mask.sum())) * cdf[-1])
        del mask
    np.clip(explore, 0, len(product_ids) - 1, out=explore)
    np.clip(pools, 0, len(product_ids) - 1, out=pools)

    # Personal taste: a share of favourites and of exploring lines comes from the user's interests.
    interests = planted.interests if planted else plant_interests(catalog, base, rng, tastes)
    interest_weights = rng.dirichlet(np.full(len(interests), tastes.concentration), size=users)
    interest_cdfs = [(rows, np.cumsum(base[rows] ** INTEREST_EXPONENT)) for _, rows in interests]
    from_taste = rng.random((users, max_pool)) < tastes.strength
    owners = np.nonzero(from_taste)[0]
    pools[from_taste] = _draw_from_interests(rng, owners, interest_weights, interest_cdfs)
    from_taste = rng.random(n_lines) < tastes.strength
    explore[from_taste] = _draw_from_interests(rng, line_user[from_taste], interest_weights, interest_cdfs)
    del from_taste, owners
    from_pool = rng.random(n_lines) < np.array([t.repeat for t in SHOPPER_TYPES])[line_type]
    del line_type
    # First orders have no favourites yet; later ones favour the head of the pool.
    from_pool &= order_number[line_order] != 1
    slot = np.floor(pool_size[line_user] * rng.random(n_lines) ** 1.7).astype(np.int64)
    product = np.where(from_pool, pools[line_user, slot], explore)
    del from_pool, slot, explore, line_user, pools

    # Bundles: a line with an antecedent adds its consequent with the bundle's probability.
    bundles = planted.bundles if planted else plant_bundles(base, rng)
    consequent_of = np.full(len(product_ids), -1, dtype=np.int64)
    consequent_of[bundles["antecedent"].to_numpy()] = bundles["consequent"].to_numpy()
    has_bundle = consequent_of[product] >= 0
    add = has_bundle & (rng.random(n_lines) < bundles["probability"].iloc[0])
    extra_order = line_order[add]
    extra_product = consequent_of[product[add]]
    del has_bundle, add
    line_order = np.concatenate([line_order, extra_order])
    product = np.concatenate([product, extra_product])

    # Sort lines by order (bundle extras after their order's lines), drop repeats inside a basket.
    sort = np.argsort(line_order, kind="stable")
    line_order, product = line_order[sort], product[sort]
    del sort
    key = line_order.astype(np.int64) * len(product_ids) + product
    keep = ~pd.Series(key).duplicated().to_numpy()
    del key
    line_order, product = line_order[keep], product[keep]
    del keep
    add_to_cart = _position_in_group(line_order)
    # reordered: the user bought the product in an earlier order (orders are user-major, chronological).
    user_product = user_idx[line_order].astype(np.int64) * len(product_ids) + product
    reordered = pd.Series(user_product).duplicated().to_numpy().astype(np.int8)
    del user_product

    order_date = np.datetime64(start.isoformat(), "D") + order_day.astype("timedelta64[D]")
    delivered = order_day >= days - delivered_days
    line_delivered = delivered[line_order]
    orders = pd.DataFrame(
        {
            "order_id": order_ids,
            "user_id": user_idx.astype(np.int64) + 1 + users_before,
            "eval_set": "prior",
            "order_number": order_number,
            "order_dow": order_dow.astype(np.int8),
            "order_hour_of_day": hour.astype(np.int8),
            "days_since_prior_order": days_since,
            "order_date": order_date,
        }
    )[delivered].reset_index(drop=True)
    lines = pd.DataFrame(
        {
            "order_id": order_ids[line_order][line_delivered],
            "product_id": product_ids[product][line_delivered],
            "add_to_cart_order": add_to_cart.astype(np.int16)[line_delivered],
            "reordered": reordered[line_delivered],
        }
    )
    if progress:
        log.info(
            "generate: %d orders, %d lines, reorder ratio %.3f, mean basket %.2f (%.1f s)",
            len(orders),
            len(lines),
            lines["reordered"].mean() if len(lines) else 0.0,
            len(lines) / max(len(orders), 1),
            time.monotonic() - started,
        )
    user_types = pd.DataFrame(
        {
            "user_id": np.arange(users_before + 1, users_before + users + 1),
            "shopper_type": np.array([t.name for t in SHOPPER_TYPES])[user_type],
        }
    )
    truth_bundles = pd.DataFrame(
        {
            "antecedent": product_ids[bundles["antecedent"].to_numpy()],
            "consequent": product_ids[bundles["consequent"].to_numpy()],
            "probability": bundles["probability"].to_numpy(),
        }
    )
    interest_table = pd.DataFrame(
        {
            "interest_id": np.arange(len(interests), dtype=np.int32),
            "interest": [name for name, _ in interests],
            "products": [len(rows) for _, rows in interests],
        }
    )
    user_of_weight, interest_of_weight = np.nonzero(interest_weights >= 0.01)
    user_interests = pd.DataFrame(
        {
            "user_id": user_of_weight.astype(np.int64) + 1 + users_before,
            "interest_id": interest_of_weight.astype(np.int32),
            "weight": interest_weights[user_of_weight, interest_of_weight],
        }
    )
    feed = Feed(orders, lines, user_types, truth_bundles, interest_table, user_interests)
    return feed, Planted(base, interests, bundles), n_orders


def _position_in_group(group: np.ndarray) -> np.ndarray:
    """1-based position of each element within its run of equal values (``group`` sorted)."""
    if len(group) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(group)) + 1]
    run_lengths = np.diff(np.r_[starts, len(group)])
    return np.arange(len(group)) - np.repeat(starts, run_lengths) + 1


# -- writing drops ---------------------------------------------------------------------------


def csv_bytes(frame: pd.DataFrame | pa.Table) -> bytes:
    """CSV text of a frame as Instacart writes it: plain header, quotes only where a value needs them."""
    table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    needs_quotes = any(
        (pa.types.is_string(col.type) or pa.types.is_large_string(col.type))
        and pc.any(pc.match_substring_regex(col, r'[",\r\n]')).as_py()
        for col in table.columns
    )
    sink = io.BytesIO()
    sink.write((",".join(table.column_names) + "\n").encode())
    options = pcsv.WriteOptions(include_header=False, quoting_style="needed" if needs_quotes else "none")
    pcsv.write_csv(table, sink, options)
    return sink.getvalue()


ORDER_COLUMNS = [
    "order_id",
    "user_id",
    "eval_set",
    "order_number",
    "order_dow",
    "order_hour_of_day",
    "days_since_prior_order",
]
LINE_COLUMNS = ["order_id", "product_id", "add_to_cart_order", "reordered"]


@dataclass(frozen=True)
class DailyRows:
    """Orders and order lines of some users sorted by date, with where each date's rows start.

    What the drops are written from, chunk by chunk: ids are kept as 32-bit integers when they fit
    (the CSV text is the same), so a large feed's chunks wait for the writer in little memory.
    """

    orders: pa.Table  # ORDER_COLUMNS
    lines: pa.Table  # LINE_COLUMNS
    order_starts: np.ndarray  # per date of the range, then the end: row offsets into ``orders``
    line_starts: np.ndarray

    @classmethod
    def of(cls, orders: pd.DataFrame, lines: pd.DataFrame, *, first_date: str, last_date: str) -> DailyRows:
        """Sort ``orders`` (with ``order_date``) and their ``lines`` by date over ``first_date``..``last_date``."""
        day_of_order = orders["order_date"].to_numpy("datetime64[D]")
        order_sort = np.argsort(day_of_order, kind="stable")
        lookup = pd.Series(day_of_order, index=orders["order_id"].to_numpy())
        line_days = lookup.reindex(lines["order_id"].to_numpy()).to_numpy("datetime64[D]")
        line_sort = np.argsort(line_days, kind="stable")
        bounds = np.arange(np.datetime64(first_date, "D"), np.datetime64(last_date, "D") + 2)
        return cls(
            orders=_narrow_ids(pa.Table.from_pandas(orders.iloc[order_sort][ORDER_COLUMNS], preserve_index=False)),
            lines=_narrow_ids(pa.Table.from_pandas(lines.iloc[line_sort][LINE_COLUMNS], preserve_index=False)),
            order_starts=np.searchsorted(day_of_order[order_sort], bounds),
            line_starts=np.searchsorted(line_days[line_sort], bounds),
        )


def _narrow_ids(table: pa.Table) -> pa.Table:
    """``order_id``, ``user_id`` and ``product_id`` as int32 when every value fits."""
    for name in ("order_id", "user_id", "product_id"):
        if name in table.column_names:
            column = table[name]
            if len(column) == 0 or pc.max(column).as_py() < 2**31:
                table = table.set_column(table.schema.get_field_index(name), name, column.cast(pa.int32()))
    return table


def write_daily_drops(
    lake: Lake,
    parts: Sequence[DailyRows],
    catalog: Catalog,
    *,
    first_date: str,
    last_date: str,
    progress: bool = True,
) -> dict:
    """Write one ``orders`` and one ``order_products`` drop per day (header only on a day without
    orders) and the catalog drop on ``first_date``.

    ``parts`` (:meth:`DailyRows.of` over ``first_date``..``last_date``) are written one after the
    other inside each day's drop.
    """
    started = time.monotonic()
    for name, frame in (
        ("departments", catalog.departments),
        ("aisles", catalog.aisles),
        ("products", catalog.products),
    ):
        lake.put_landing(name, first_date, csv_bytes(frame))
    all_days = np.arange(np.datetime64(first_date, "D"), np.datetime64(last_date, "D") + 1)
    for i, day in enumerate(all_days):
        ds = str(day)
        for name, rows_of in (("orders", _orders_of_day), ("order_products", _lines_of_day)):
            lake.put_landing(name, ds, csv_bytes(pa.concat_tables([rows_of(part, i) for part in parts])))
        if progress and (i + 1) % 30 == 0:
            log.info("drops: %d/%d days written (%.1f s)", i + 1, len(all_days), time.monotonic() - started)
    return {
        "days": len(all_days),
        "orders": sum(len(part.orders) for part in parts),
        "order_lines": sum(len(part.lines) for part in parts),
        "first_date": first_date,
    }


def _orders_of_day(part: DailyRows, day: int) -> pa.Table:
    return part.orders.slice(part.order_starts[day], part.order_starts[day + 1] - part.order_starts[day])


def _lines_of_day(part: DailyRows, day: int) -> pa.Table:
    return part.lines.slice(part.line_starts[day], part.line_starts[day + 1] - part.line_starts[day])


def generate(
    lake: Lake,
    *,
    users: int,
    days: int,
    end_date: str,
    seed: int = 0,
    catalog_dir: str | Path | None = None,
    chunk_users: int = CHUNK_USERS,
) -> dict:
    """Generate a feed and deliver it as daily landing drops; write the planted truth to ``_truth/``.

    Users are simulated in chunks of ``chunk_users`` (:func:`feed_chunks`); only each chunk's
    date-sorted orders and lines are kept for the writer, so memory grows slowly past one chunk.

    Returns
    -------
    dict
        Counts and dates of what was written.
    """
    if users < 1 or days < 1:
        raise ValueError("users and days must be at least 1")
    catalog = load_catalog(catalog_dir) if catalog_dir else synthetic_catalog(seed=seed)
    first_date = (date.fromisoformat(end_date) - timedelta(days=days - 1)).isoformat()
    parts: list[DailyRows] = []
    per_user: dict[str, list[pa.Table]] = {"user_types": [], "user_interests": []}
    for feed in feed_chunks(catalog, users=users, days=days, end_date=end_date, seed=seed, chunk_users=chunk_users):
        parts.append(DailyRows.of(feed.orders, feed.lines, first_date=first_date, last_date=end_date))
        for name, tables in per_user.items():
            tables.append(pa.Table.from_pandas(getattr(feed, name), preserve_index=False))
        planted = {
            name: pa.Table.from_pandas(getattr(feed, name), preserve_index=False) for name in ("bundles", "interests")
        }
        del feed
    summary = write_daily_drops(lake, parts, catalog, first_date=first_date, last_date=end_date)
    for name, tables in per_user.items():
        lake.write_table("_truth", name, end_date, pa.concat_tables(tables))
    for name, table in planted.items():  # every chunk's same
        lake.write_table("_truth", name, end_date, table)
    summary.update({"users": users, "last_date": end_date, "catalog": str(catalog_dir or "synthetic")})
    return summary
