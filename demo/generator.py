"""A synthetic shop whose shoppers have hidden, consistent tastes.

Pure Python, no database: ``generate_shop`` returns plain data that the ``demo_shop`` command
writes. Keeping the logic here lets tests check the shop's statistics in milliseconds, and makes
the whole shop a function of its seed (the same seed and ``now`` give the same shop).

Why hidden tastes: a recommender can only show that it learns if there is something to learn.
Each shopper has 1-3 favourite categories (often related ones), preferred brands and a price
level. Their browsing sessions mostly stay in those categories, views favour their brands and
price level, sessions often end in a purchase, and some purchases bring along a product from a
complementary category (a tent with a sleeping bag, a camera with a memory card).
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np

from .vocabulary import CATEGORIES, SERIES, CategoryVocabulary, ProductType

# Words that stay capitalised when a title is turned into running text.
KEEP_CASE = frozenset({"Japanese", "German", "Damascus", "Earl", "Grey", "Dutch", "French",
                       "Pilates", "Bluetooth", "Arabica"})
PRICE_TIERS = (0.15, 0.5, 0.85)  # budget, middle, premium: the price quantile a shopper prefers
PREFERRED_BRAND_BOOST = 4.0
EXPLORE_PROBABILITY = 0.12  # a session outside the shopper's favourite categories
PURCHASE_PROBABILITY = 0.4  # a session in a favourite category ends in an order
EXPLORE_PURCHASE_PROBABILITY = 0.1
COMPLEMENT_PROBABILITY = 0.5  # an order also takes a product from a complementary category
# A session (at most 10 views of 4 minutes and a checkout) starts at least this long before
# ``now``, so that no event lies in the future.
SESSION_HEADROOM = timedelta(hours=1)


@dataclass(frozen=True)
class ProductSpec:
    title: str
    description: str
    brand: str
    category_slug: str
    price: Decimal
    stock: int
    active: bool
    # Hidden general appeal: why some products are popular with everybody.
    appeal: float

    @property
    def available(self) -> bool:
        return self.active and self.stock > 0


@dataclass(frozen=True)
class Taste:
    """What a shopper likes; never stored, only visible through their behaviour."""

    categories: tuple[str, ...]  # favourite category slugs, most liked first
    brands: frozenset[str]
    price_level: float  # 0: always the cheapest in a category, 1: always the dearest


@dataclass(frozen=True)
class View:
    timestamp: datetime
    product: int  # index into SyntheticShop.products


@dataclass(frozen=True)
class Purchase:
    timestamp: datetime
    lines: tuple[tuple[int, int], ...]  # (product index, quantity)


@dataclass
class Shopper:
    username: str
    taste: Taste
    views: list[View] = field(default_factory=list)
    orders: list[Purchase] = field(default_factory=list)


@dataclass
class SyntheticShop:
    categories: tuple[CategoryVocabulary, ...]
    products: list[ProductSpec]
    shoppers: list[Shopper]

    @property
    def view_count(self) -> int:
        return sum(len(s.views) for s in self.shoppers)

    @property
    def order_count(self) -> int:
        return sum(len(s.orders) for s in self.shoppers)

    @property
    def order_line_count(self) -> int:
        return sum(len(o.lines) for s in self.shoppers for o in s.orders)


def generate_shop(
    *,
    products: int,
    shoppers: int,
    seed: int,
    days: int,
    now: datetime,
    categories: Sequence[CategoryVocabulary] = CATEGORIES,
) -> SyntheticShop:
    """The catalogue, then each shopper's taste and history over the ``days`` before ``now``."""
    if products < len(categories):
        raise ValueError(
            f"products must be at least {len(categories)} (one per category), got {products}"
        )
    if shoppers < 0:
        raise ValueError(f"shoppers must be 0 or more, got {shoppers}")
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    categories = tuple(categories)
    catalogue = generate_catalogue(products, random.Random(f"{seed}:catalogue"), categories)
    index = _CatalogueIndex(catalogue, categories)
    taste_rng = random.Random(f"{seed}:tastes")
    category_popularity = {c.slug: taste_rng.lognormvariate(0, 0.5) for c in categories}
    people = []
    for number in range(1, shoppers + 1):
        taste = generate_taste(taste_rng, categories, category_popularity)
        shopper = Shopper(username=f"shopper{number}", taste=taste)
        simulate_history(
            shopper, index, category_popularity, random.Random(f"{seed}:shopper:{number}"),
            days=days, now=now,
        )
        people.append(shopper)
    return SyntheticShop(categories=categories, products=catalogue, shoppers=people)


# --- Catalogue ----------------------------------------------------------------------------


def generate_catalogue(
    count: int, rng: random.Random, categories: Sequence[CategoryVocabulary]
) -> list[ProductSpec]:
    """``count`` products spread evenly over ``categories`` in mixed order, every title unique."""
    per_category = [count // len(categories)] * len(categories)
    for i in rng.sample(range(len(categories)), count % len(categories)):
        per_category[i] += 1
    titles: set[str] = set()
    catalogue = []
    for vocab, n in zip(categories, per_category, strict=True):
        brand_price_factor = {b: rng.uniform(0.8, 1.25) for b in vocab.brands}
        for _ in range(n):
            catalogue.append(_product(vocab, rng, titles, brand_price_factor))
    # Mixed, as a real catalogue grows: the newest page is not one category's block.
    rng.shuffle(catalogue)
    return catalogue


def _product(
    vocab: CategoryVocabulary,
    rng: random.Random,
    taken_titles: set[str],
    brand_price_factor: dict[str, float],
) -> ProductSpec:
    for _ in range(100):
        kind = rng.choice(vocab.types)
        # "Wireless Wireless Earbuds" would give the generator away.
        noun = kind.noun.lower()
        adjectives = [a for a in vocab.words(kind, "adjectives") if a.lower() not in noun]
        adjective = rng.choice(adjectives)
        title = f"{rng.choice(SERIES)} {adjective} {kind.noun} - {rng.choice(kind.variants)}"
        if title not in taken_titles:
            break
    else:  # a tiny vocabulary ran out of combinations: number the edition
        title = f"{title} (Edition {len(taken_titles) + 1})"
    taken_titles.add(title)
    brand = rng.choice(vocab.brands)
    price = math.exp(rng.uniform(math.log(kind.low), math.log(kind.high)))
    return ProductSpec(
        title=title,
        description=_description(vocab, kind, rng, adjective, brand),
        brand=brand,
        category_slug=vocab.slug,
        price=Decimal(max(1, round(price * brand_price_factor[brand]))) - Decimal("0.01"),
        stock=0 if rng.random() < 0.04 else rng.randint(1, 120),
        active=rng.random() < 0.98,
        appeal=rng.lognormvariate(0, 0.6),
    )


def _description(
    vocab: CategoryVocabulary, kind: ProductType, rng: random.Random, adjective: str, brand: str
) -> str:
    """One to three sentences: what it is and what it is made of, its features, its use."""
    plural = kind.noun.endswith("s") and not kind.noun.endswith("ss")
    thing = f"{_running_text(adjective)} {_running_text(kind.noun)}"
    if not plural:
        thing = f"{_article(thing)} {thing}"
    material = rng.choice(vocab.words(kind, "materials"))
    sentences = [f"{thing[0].upper()}{thing[1:]} from {brand}, made with {material}."]
    if rng.random() < 0.8:
        first, second = rng.sample(vocab.words(kind, "features"), 2)
        sentences.append(f"{'They have' if plural else 'It has'} {first} and {second}.")
    if rng.random() < 0.6:
        opener = rng.choice(("Ideal for", "Made for", "A great choice for"))
        sentences.append(f"{opener} {rng.choice(vocab.words(kind, 'uses'))}.")
    return " ".join(sentences)


def _article(phrase: str) -> str:
    """"a" or "an" by sound: "an ultralight tent", "a USB-C charger", "an SD memory card"."""
    word = phrase.split()[0].split("-")[0]
    if len(word) > 1 and word.isupper():  # an acronym is read letter by letter
        return "an" if word[0] in "AEFHILMNORSX" else "a"
    return "an" if word[0].lower() in "aeiou" else "a"


def _running_text(words: str) -> str:
    """Lower-case plain capitalised words ("Hiking Boots" -> "hiking boots"), keep "USB-C", "4K"."""
    def lower(part: str) -> str:
        plain = part[:1].isupper() and part[1:].islower() and part not in KEEP_CASE
        return part.lower() if plain else part

    return " ".join("-".join(lower(p) for p in word.split("-")) for word in words.split())


# --- Shoppers -----------------------------------------------------------------------------


def generate_taste(
    rng: random.Random,
    categories: Sequence[CategoryVocabulary],
    category_popularity: dict[str, float],
) -> Taste:
    """1-3 favourite categories (a second one is often a complement of the first)."""
    by_slug = {c.slug: c for c in categories}
    slugs = list(by_slug)
    wanted = rng.choices((1, 2, 3), weights=(0.35, 0.45, 0.2))[0]
    favourites = [_weighted_choice(rng, slugs, [category_popularity[s] for s in slugs])]
    while len(favourites) < wanted:
        related = [c for f in favourites for c in by_slug[f].complements
                   if c in by_slug and c not in favourites]
        if related and rng.random() < 0.5:
            favourites.append(rng.choice(related))
        else:
            others = [s for s in slugs if s not in favourites]
            popularity = [category_popularity[s] for s in others]
            favourites.append(_weighted_choice(rng, others, popularity))
    complements = {c for f in favourites for c in by_slug[f].complements if c in by_slug}
    liked = set(favourites) | complements
    brands = frozenset(
        brand for slug in sorted(liked)
        for brand in rng.sample(by_slug[slug].brands, rng.randint(1, 2))
    )
    tier = rng.choice(PRICE_TIERS)
    price_level = min(1.0, max(0.0, tier + rng.uniform(-0.1, 0.1)))
    return Taste(categories=tuple(favourites), brands=brands, price_level=price_level)


class _CatalogueIndex:
    """Available products per category and each one's price quantile within its category."""

    def __init__(
        self, products: Sequence[ProductSpec], categories: Sequence[CategoryVocabulary]
    ) -> None:
        self.products = products
        self.complements = {c.slug: c.complements for c in categories}
        self.by_category: dict[str, list[int]] = {c.slug: [] for c in categories}
        for i, product in enumerate(products):
            if product.available:
                self.by_category[product.category_slug].append(i)
        self.price_quantile: dict[int, float] = {}
        for members in self.by_category.values():
            ranked = sorted(members, key=lambda i: products[i].price)
            for rank, i in enumerate(ranked):
                self.price_quantile[i] = rank / max(1, len(ranked) - 1)
        # The same per category as arrays, so that a shopper's preference for every product of a
        # category is one vectorised expression (a 50,000-product shop has 2,000 per category).
        self.appeals = {s: np.array([products[i].appeal for i in m])
                        for s, m in self.by_category.items()}
        self.quantiles = {s: np.array([self.price_quantile[i] for i in m])
                          for s, m in self.by_category.items()}
        self.brands = {s: np.array([products[i].brand for i in m], dtype=object)
                       for s, m in self.by_category.items()}


def _preference(index: _CatalogueIndex, taste: Taste, product: int) -> float:
    """How much this shopper likes this product: general appeal x brand x price fit."""
    spec = index.products[product]
    brand = PREFERRED_BRAND_BOOST if spec.brand in taste.brands else 1.0
    distance = (index.price_quantile[product] - taste.price_level) / 0.22
    return spec.appeal * brand * (math.exp(-distance * distance) + 0.05)


def _category_preferences(index: _CatalogueIndex, taste: Taste, slug: str) -> np.ndarray:
    """``_preference`` of every available product of a category, in ``by_category`` order."""
    brand = np.where(np.isin(index.brands[slug], list(taste.brands)), PREFERRED_BRAND_BOOST, 1.0)
    distance = (index.quantiles[slug] - taste.price_level) / 0.22
    return index.appeals[slug] * brand * (np.exp(-distance * distance) + 0.05)


def simulate_history(
    shopper: Shopper,
    index: _CatalogueIndex,
    category_popularity: dict[str, float],
    rng: random.Random,
    *,
    days: int,
    now: datetime,
) -> None:
    """Fill ``shopper.views`` and ``shopper.orders`` with time-ordered browsing sessions."""
    taste = shopper.taste
    weights: dict[str, tuple[list[int], list[float]]] = {}

    def products_of(slug: str) -> tuple[list[int], list[float]]:
        if slug not in weights:
            members = index.by_category[slug]
            cumulative = np.cumsum(_category_preferences(index, taste, slug)).tolist()
            weights[slug] = (members, cumulative)
        return weights[slug]

    def browse(slug: str, at: datetime, count: int) -> tuple[list[int], datetime]:
        members, cumulative = products_of(slug)
        seen = _weighted_sample(rng, members, cumulative, count)
        for product in seen:
            at += timedelta(seconds=rng.uniform(15, 240))
            shopper.views.append(View(timestamp=at, product=product))
        return seen, at

    def favourite_of(seen: list[int]) -> int:
        return max(seen, key=lambda i: _preference(index, taste, i) * rng.uniform(0.7, 1.3))

    others = [s for s in index.by_category if s not in taste.categories and index.by_category[s]]
    session_count = min(40, max(2, round(rng.lognormvariate(math.log(8), 0.6))))
    starts = sorted(now - timedelta(seconds=rng.uniform(SESSION_HEADROOM.total_seconds(),
                                                        days * 86400))
                    for _ in range(session_count))
    free_from = starts[0]
    for start in starts:
        # Sessions never overlap: a shopper finishes one visit before the next begins.
        start = max(start, free_from)
        if start > now - SESSION_HEADROOM:
            break
        exploring = bool(others) and rng.random() < EXPLORE_PROBABILITY
        if exploring:
            slug = _weighted_choice(rng, others, [category_popularity[s] for s in others])
        else:
            slug = _weighted_choice(rng, taste.categories, [3, 2, 1][: len(taste.categories)])
        if not index.by_category[slug]:
            continue
        seen, at = browse(slug, start, rng.randint(2, 7))
        free_from = at + timedelta(minutes=30)
        chance = EXPLORE_PURCHASE_PROBABILITY if exploring else PURCHASE_PROBABILITY
        if rng.random() >= chance:
            continue
        lines = [(favourite_of(seen), 1 if rng.random() < 0.85 else 2)]
        complements = [c for c in index.complements[slug] if index.by_category.get(c)]
        if complements and rng.random() < COMPLEMENT_PROBABILITY:
            extra, at = browse(rng.choice(complements), at, rng.randint(1, 3))
            lines.append((favourite_of(extra), 1))
        at += timedelta(seconds=rng.uniform(60, 600))
        shopper.orders.append(Purchase(timestamp=at, lines=tuple(lines)))
        free_from = at + timedelta(minutes=30)


def _weighted_choice(rng: random.Random, items: Sequence[str], weights: Sequence[float]) -> str:
    return rng.choices(items, weights=weights)[0]


def _weighted_sample(
    rng: random.Random, items: Sequence[int], cumulative: Sequence[float], count: int
) -> list[int]:
    """``count`` distinct items drawn in proportion to weight, one after the other.

    Drawing with replacement and skipping repeats is successive sampling without replacement;
    with ``count`` far below ``len(items)`` it costs a few binary searches over the cumulative
    weights instead of a key for every item.
    """
    wanted = min(count, len(items))
    total = cumulative[-1]
    chosen: dict[int, None] = {}
    while len(chosen) < wanted:
        position = bisect.bisect_right(cumulative, rng.random() * total)
        chosen.setdefault(items[min(position, len(items) - 1)], None)
    return list(chosen)
