"""A tiny demo shop for plugin tests: two categories, three products, two shoppers."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest
from celery import current_app
from django.contrib.auth.models import User

from demo.models import Category, Order, OrderLine, Product

# The recommendation tests' shop and tiny trained model (fixtures, see recs_fixtures).
from tests.plugin.recs_fixtures import (  # noqa: F401
    active_model,
    corrupt_model,
    recs_shop,
    trained_artifact,
)


@pytest.fixture
def not_eager():
    """Tasks go to a broker (the test replaces send_task), as in production."""
    saved = current_app.conf["task_always_eager"]
    current_app.conf.update(task_always_eager=False)
    yield
    current_app.conf.update(task_always_eager=saved)


@dataclass
class TinyShop:
    tea: Category
    kettles: Category
    green_tea: Product  # available
    black_tea: Product  # available
    old_kettle: Product  # inactive: not available for recommendations
    alice: User
    bob: User

    def order(self, user: User, *lines: tuple[Product, int], **order_fields) -> list[OrderLine]:
        """An order with these (product, quantity) lines, saved the way a shop saves one."""
        order = Order.objects.create(user=user, **order_fields)
        return [OrderLine.objects.create(order=order, product=p, quantity=q) for p, q in lines]


@pytest.fixture
def shop(db) -> TinyShop:
    tea = Category.objects.create(name="Tea", slug="tea")
    kettles = Category.objects.create(name="Kettles", slug="kettles")
    return TinyShop(
        tea=tea,
        kettles=kettles,
        green_tea=Product.objects.create(
            title="Sencha Green Tea", description="Grassy and fresh.", brand="Kyoto Leaf",
            category=tea, price=Decimal("6.50"),
        ),
        black_tea=Product.objects.create(
            title="Assam Black Tea", description="", brand="", category=tea, price=Decimal("4.00"),
        ),
        old_kettle=Product.objects.create(
            title="Stovetop Kettle", description="Whistles.", brand="Boil", category=kettles,
            price=Decimal("30"), active=False,
        ),
        alice=User.objects.create_user("alice", password="alice-pw"),
        bob=User.objects.create_user("bob", password="bob-pw"),
    )
