"""A small tea/coffee/kettle shop and a tiny model trained on it, for the recommendation tests.

The model is trained once per test session (a few seconds: 90 shoppers, 18 products) with the
real pipeline (recsys_core.pipeline.train_version, text + ID). Each test that asks for
``active_model`` stores that artifact as a ModelVersion and activates it, the way a training run
does; ``corrupt_model`` activates a copy whose weights file was damaged.

Product ids are fixed (tea 11-16, coffee 21-26, kettles 31-36), so the model's item ids match the
products each test creates. 17 is a tea the model never saw (a new product); 37 is not sold any
more and 38 is out of stock (neither may be recommended).
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.core.management.color import no_style
from django.db import connection
from django.utils import timezone

from demo.models import Category, Product
from shop_recs.events import record_event
from shop_recs.models import ModelVersion
from shop_recs.registry import GateDecision, store_version
from shop_recs.services import fallbacks, new_products, recommendations, search
from shop_recs.services.catalog import catalog
from shop_recs.serving import LoadedModel, model_holder

CATALOGUE = {
    "tea": {
        11: "Sencha Green Tea", 12: "Assam Black Tea", 13: "Earl Grey Black Tea",
        14: "Jasmine Green Tea", 15: "Darjeeling Black Tea", 16: "Oolong Tea",
    },
    "coffee": {
        21: "Espresso Coffee Beans", 22: "Colombian Ground Coffee", 23: "Ethiopian Coffee Beans",
        24: "Decaf Ground Coffee", 25: "French Roast Coffee Beans", 26: "Cold Brew Coffee",
    },
    "kettles": {
        31: "Stovetop Kettle", 32: "Electric Kettle", 33: "Gooseneck Pour-over Kettle",
        34: "Glass Electric Kettle", 35: "Travel Kettle", 36: "Whistling Stovetop Kettle",
    },
}
DESCRIPTIONS = {
    "tea": "Loose leaf tea for brewing in a teapot.",
    "coffee": "Roasted coffee for espresso and filter brewing.",
    "kettles": "A kettle to boil water for tea and coffee.",
}
NEW_TEA = 17  # not in the model: "similar" falls back to text similarity
RETIRED_KETTLE = 37  # active=False
SOLD_OUT_KETTLE = 38  # stock=0
TEA = [str(pk) for pk in CATALOGUE["tea"]]
COFFEE = [str(pk) for pk in CATALOGUE["coffee"]]
KETTLES = [str(pk) for pk in CATALOGUE["kettles"]]


def training_interactions(seed: int = 0) -> list[tuple[str, str, str, float]]:
    """90 shoppers, each browsing and buying within one category (30 per category)."""
    rng = random.Random(seed)
    rows = []
    clock = 1_700_000_000.0
    for user in range(90):
        items = [TEA, COFFEE, KETTLES][user % 3]
        for _ in range(8):
            clock += 60
            kind = "purchase" if rng.random() < 0.2 else "view"
            rows.append((f"u{user}", rng.choice(items), kind, clock))
    return rows


@pytest.fixture(scope="session")
def trained_artifact(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """(artifact folder, metrics) of a tiny text+ID model trained on the three-category shop."""
    from recsys_core.config import TrainConfig
    from recsys_core.data import build_dataset
    from recsys_core.pipeline import train_version
    from recsys_core.text import TextEncoder

    texts = {
        str(pk): f"{title}. {DESCRIPTIONS[category]}"
        for category, products in CATALOGUE.items() for pk, title in products.items()
    }
    data = build_dataset(training_interactions(), item_ids=sorted(texts, key=int), item_texts=texts)
    root = tmp_path_factory.mktemp("recs-model")
    result = train_version(
        data,
        model_config_overrides={"d_model": 32, "n_layers": 1, "n_heads": 1, "max_len": 20},
        train_config=TrainConfig(epochs=12, patience=3, batch_size=32, seed=0, device="cpu"),
        text_encoder=TextEncoder(cache_dir=root / "embeddings"),
        output_dir=root / "artifact",
        baseline_scores=False,
    )
    return root / "artifact", result.metrics


@dataclass
class RecsShop:
    categories: dict[str, Category]
    products: dict[int, Product]
    alice: User
    bob: User
    staff: User
    clock: dt.datetime = field(default_factory=lambda: timezone.now() - dt.timedelta(hours=1))

    def product(self, pk: int | str) -> Product:
        return self.products[int(pk)]

    def _tick(self) -> dt.datetime:
        self.clock += dt.timedelta(seconds=10)
        return self.clock

    def record(self, kind: str, *product_ids: int | str, user: User | None = None,
               session_key: str | None = None) -> None:
        """Events of one shopper, one after the other (ten seconds apart, in the last hour)."""
        for pid in product_ids:
            record_event(kind=kind, product=str(pid), user=user, session_key=session_key,
                         timestamp=self._tick())

    def view(self, *product_ids: int | str, **who) -> None:
        self.record("view", *product_ids, **who)

    def buy(self, *product_ids: int | str, **who) -> None:
        self.record("purchase", *product_ids, **who)


def reset_recs_caches() -> None:
    """Forget every per-process and shared cache the services keep (each test starts clean)."""
    cache.clear()
    catalog.invalidate()
    fallbacks.popular_ranking.invalidate()
    fallbacks.trending_ranking.invalidate()
    recommendations.known_items.cache_clear()
    new_products.placed_model.invalidate()
    model_holder.reset()
    search.search_index.invalidate()
    search.popular_queries.invalidate()


@pytest.fixture
def recs_shop(db) -> RecsShop:
    reset_recs_caches()
    categories = {
        name: Category.objects.create(pk=i, name=name.title(), slug=name)
        for i, name in enumerate(CATALOGUE, start=1)
    }
    products = {}
    for name, titles in CATALOGUE.items():
        for pk, title in titles.items():
            products[pk] = Product.objects.create(
                pk=pk, title=title, description=DESCRIPTIONS[name], category=categories[name],
                price=Decimal("9.50"),
            )
    products[NEW_TEA] = Product.objects.create(
        pk=NEW_TEA, title="Genmaicha Green Tea", description=DESCRIPTIONS["tea"],
        category=categories["tea"], price=Decimal("7"),
    )
    products[RETIRED_KETTLE] = Product.objects.create(
        pk=RETIRED_KETTLE, title="Retired Kettle", category=categories["kettles"],
        price=Decimal("20"), active=False,
    )
    products[SOLD_OUT_KETTLE] = Product.objects.create(
        pk=SOLD_OUT_KETTLE, title="Sold-out Kettle", category=categories["kettles"],
        price=Decimal("20"), stock=0,
    )
    _reset_sequences(Category, Product)  # products a test adds get ids after these
    shop = RecsShop(
        categories=categories, products=products,
        alice=User.objects.create_user("alice", password="alice-pw"),
        bob=User.objects.create_user("bob", password="bob-pw"),
        staff=User.objects.create_user("staff", password="staff-pw", is_staff=True),
    )
    yield shop
    reset_recs_caches()


def _reset_sequences(*models: type) -> None:
    """Move the id sequences past the ids given explicitly (PostgreSQL: else a product a test
    creates may get one of them, depending on how many earlier tests created)."""
    statements = connection.ops.sequence_reset_sql(no_style(), models)
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def activate(artifact: Path, metrics: dict) -> ModelVersion:
    version = store_version(None, artifact, metrics, {}, GateDecision(True, "test"))
    version.activate()
    model_holder.reset()
    return version


@pytest.fixture
def active_model(recs_shop: RecsShop, trained_artifact: tuple[Path, dict]) -> LoadedModel:
    version = activate(*trained_artifact)
    loaded = model_holder.get()
    assert loaded is not None and loaded.version_id == version.pk
    return loaded


@pytest.fixture
def corrupt_model(recs_shop: RecsShop, trained_artifact: tuple[Path, dict]) -> ModelVersion:
    """The active version's weights file is damaged after it was stored."""
    version = activate(*trained_artifact)
    _, names = default_storage.listdir(version.artifact_path)
    weights = next(name for name in names if name.endswith(".safetensors"))
    with default_storage.open(f"{version.artifact_path}/{weights}", "r+b") as handle:
        handle.seek(0)
        handle.write(b"\x00" * 64)
    model_holder.reset()
    return version
