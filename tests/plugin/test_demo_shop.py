"""The demo shop: its synthetic data (sizes, seed, hidden tastes), its command and its pages."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from demo.generator import SyntheticShop, generate_shop
from demo.models import Category, Order, OrderLine, Product
from demo.vocabulary import CATEGORIES
from shop_recs.models import Event, EventKind
from tests.plugin.recs_fixtures import reset_recs_caches

NOW = datetime(2026, 1, 15, 12, tzinfo=UTC)
DAYS = 60


@pytest.fixture(scope="module")
def shop() -> SyntheticShop:
    return generate_shop(products=600, shoppers=150, seed=7, days=DAYS, now=NOW)


# --- The generator ------------------------------------------------------------------------


def test_shop_has_the_asked_sizes_in_every_category(shop: SyntheticShop) -> None:
    assert len(shop.products) == 600
    assert [s.username for s in shop.shoppers] == [f"shopper{n}" for n in range(1, 151)]
    per_category = defaultdict(int)
    for product in shop.products:
        per_category[product.category_slug] += 1
    assert len(per_category) == len(shop.categories) >= 20
    assert max(per_category.values()) - min(per_category.values()) <= 1
    assert len({p.title for p in shop.products}) == 600


def test_titles_and_descriptions_read_like_a_shop(shop: SyntheticShop) -> None:
    for product in shop.products:
        words = product.title.split(" - ")[0].lower().split()
        assert re.fullmatch(r"[A-Z][\w'-]+ .+ - .+", product.title), product.title
        assert not any(a == b for a, b in zip(words, words[1:], strict=False)), product.title
        sentences = re.findall(r"[^.]+?\.(?:\s|$)", product.description)
        assert 1 <= len(sentences) <= 3, product.description
        assert f"from {product.brand}, made with" in product.description
        assert product.price > 0 and product.price % 1 == Decimal("0.99")


def test_prices_follow_the_product_type(shop: SyntheticShop) -> None:
    def mean_price(slug: str) -> Decimal:
        prices = [p.price for p in shop.products if p.category_slug == slug]
        return sum(prices) / len(prices)

    assert mean_price("cameras") > 5 * mean_price("camera-accessories")


def test_same_seed_same_shop_other_seed_other_shop(shop: SyntheticShop) -> None:
    again = generate_shop(products=600, shoppers=150, seed=7, days=DAYS, now=NOW)
    other = generate_shop(products=600, shoppers=150, seed=8, days=DAYS, now=NOW)
    assert again.products == shop.products and again.shoppers == shop.shoppers
    assert other.products != shop.products
    assert [s.taste for s in other.shoppers] != [s.taste for s in shop.shoppers]


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ({"products": 10, "shoppers": 5, "days": 30}, "at least 25"),
        ({"products": 100, "shoppers": -1, "days": 30}, "shoppers must be 0 or more"),
        ({"products": 100, "shoppers": 5, "days": 0}, "days must be at least 1"),
    ],
)
def test_impossible_sizes_are_refused(sizes: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_shop(seed=1, now=NOW, **sizes)


def test_every_product_type_has_words_for_every_part_of_its_text() -> None:
    slugs = {c.slug for c in CATEGORIES}
    for category in CATEGORIES:
        assert set(category.complements) <= slugs - {category.slug}, category.slug
        for kind in category.types:
            assert kind.variants and 0 < kind.low < kind.high, kind.noun
            for words in ("adjectives", "materials", "uses"):
                assert category.words(kind, words), (kind.noun, words)
            assert len(category.words(kind, "features")) >= 2, kind.noun


# --- Hidden tastes: consistent, so that there is something to learn -----------------------


def _liked_categories(shop: SyntheticShop, favourites: tuple[str, ...]) -> set[str]:
    complements = {c.slug: set(c.complements) for c in shop.categories}
    return set(favourites).union(*(complements[f] for f in favourites))


def test_views_stay_in_the_shoppers_liked_categories(shop: SyntheticShop) -> None:
    def share_in_liked(tastes: list) -> float:
        inside = total = 0
        for shopper, taste in zip(shop.shoppers, tastes, strict=True):
            liked = _liked_categories(shop, taste.categories)
            for view in shopper.views:
                inside += shop.products[view.product].category_slug in liked
                total += 1
        return inside / total

    tastes = [s.taste for s in shop.shoppers]
    assert all(1 <= len(t.categories) <= 3 for t in tastes)
    assert share_in_liked(tastes) > 0.8
    # The same views against somebody else's taste: the fit is what makes them consistent.
    assert share_in_liked(tastes[1:] + tastes[:1]) < 0.4


def test_purchases_favour_preferred_brands(shop: SyntheticShop) -> None:
    bought = preferred = 0
    base_rate = []
    for shopper in shop.shoppers:
        for order in shopper.orders:
            for index, _ in order.lines:
                product = shop.products[index]
                bought += 1
                preferred += product.brand in shopper.taste.brands
                same_category = [p for p in shop.products
                                 if p.category_slug == product.category_slug and p.available]
                base_rate.append(sum(p.brand in shopper.taste.brands for p in same_category)
                                 / len(same_category))
    assert bought > 200
    assert preferred / bought > 1.5 * (sum(base_rate) / len(base_rate))


def test_purchases_follow_the_shoppers_price_level(shop: SyntheticShop) -> None:
    quantile = {}
    for category in shop.categories:
        members = sorted((i for i, p in enumerate(shop.products)
                          if p.category_slug == category.slug and p.available),
                         key=lambda i: shop.products[i].price)
        quantile.update({i: rank / (len(members) - 1) for rank, i in enumerate(members)})

    def mean_quantile(low: float, high: float) -> float:
        values = [quantile[i] for s in shop.shoppers if low <= s.taste.price_level < high
                  for o in s.orders for i, _ in o.lines]
        return sum(values) / len(values)

    assert mean_quantile(0.7, 1.01) - mean_quantile(0.0, 0.3) > 0.3


def test_complementary_products_are_bought_together(shop: SyntheticShop) -> None:
    complements = {c.slug: set(c.complements) for c in shop.categories}
    orders = [o for s in shop.shoppers for o in s.orders]
    pairs = [o.lines for o in orders if len(o.lines) == 2]
    assert len(pairs) > 0.15 * len(orders)
    for (first, _), (second, _) in pairs:
        first_category = shop.products[first].category_slug
        assert shop.products[second].category_slug in complements[first_category]


def test_history_is_time_ordered_within_the_window(shop: SyntheticShop) -> None:
    for shopper in shop.shoppers:
        times = [v.timestamp for v in shopper.views]
        assert len(times) >= 2 and times == sorted(times)
        assert NOW - timedelta(days=DAYS) < times[0] and times[-1] < NOW
        for order in shopper.orders:
            assert NOW - timedelta(days=DAYS) < order.timestamp < NOW
            assert any(t < order.timestamp for t in times)
            assert all(shop.products[i].available for i, _ in order.lines)


# --- The command ----------------------------------------------------------------------------

COMMAND_SIZES = {"products": 50, "shoppers": 4, "seed": 3, "days": 10}


def _run(**options: object) -> str:
    out = StringIO()
    call_command("demo_shop", stdout=out, **{**COMMAND_SIZES, **options})
    return out.getvalue()


@pytest.mark.django_db
def test_command_writes_the_shop_and_its_view_events() -> None:
    expected = generate_shop(now=timezone.now(), **COMMAND_SIZES)
    output = _run()

    assert Category.objects.count() == len(CATEGORIES)
    assert Product.objects.count() == 50
    assert Order.objects.count() == expected.order_count > 0
    assert OrderLine.objects.count() == expected.order_line_count
    users = get_user_model().objects
    shopper = users.get(username="shopper1")
    assert shopper.check_password("shopper") and not shopper.is_staff
    assert users.get(username="admin").is_superuser
    assert users.get(username="admin").check_password("admin")
    views = Event.objects.filter(kind=EventKind.VIEW)
    assert views.count() == expected.view_count
    viewers = set(views.values_list("user__username", flat=True))
    assert viewers <= {f"shopper{n}" for n in range(1, 5)}
    assert views.filter(timestamp__gt=timezone.now()).count() == 0
    assert "Done in" in output and "recs_import_orders" in output


@pytest.mark.django_db
def test_command_refuses_to_mix_shops_and_reset_replaces_one() -> None:
    _run()
    with pytest.raises(CommandError, match="--reset"):
        _run(seed=4)
    first_titles = set(Product.objects.values_list("title", flat=True))

    _run(seed=4, shoppers=2, reset=True)
    assert Product.objects.count() == 50
    assert set(Product.objects.values_list("title", flat=True)) != first_titles
    assert not get_user_model().objects.filter(username="shopper3").exists()
    assert get_user_model().objects.filter(username="admin").count() == 1
    expected = generate_shop(now=timezone.now(), **{**COMMAND_SIZES, "seed": 4, "shoppers": 2})
    assert Event.objects.count() == expected.view_count  # the first shop's events are gone


@pytest.mark.django_db
def test_command_reports_impossible_sizes() -> None:
    with pytest.raises(CommandError, match="at least 25"):
        _run(products=5)
    assert not Product.objects.exists()


# --- The pages ------------------------------------------------------------------------------


@pytest.fixture
def catalogue(db: None) -> list[Product]:
    tents = Category.objects.create(name="Tents & Shelters", slug="tents")
    knives = Category.objects.create(name="Kitchen Knives", slug="kitchen-knives")
    products = [
        Product.objects.create(title=f"Summit Dome Tent {n}", brand="Wildcamp", category=tents,
                               description="A dome tent.", price=Decimal("99.99"), stock=5)
        for n in range(30)
    ]
    products.append(Product.objects.create(
        title="Hamon Santoku Knife", brand="Hamon", category=knives,
        description="A Japanese santoku knife.", price=Decimal("59.99"), stock=1,
    ))
    return products


@pytest.fixture
def shopper(django_user_model: type) -> object:
    return django_user_model.objects.create_user("shopper1", password="shopper")


def test_product_list_filters_by_category_and_paginates(client: Client, catalogue: list) -> None:
    page1 = client.get(reverse("product_list"), {"category": "tents"})
    assert page1.status_code == 200
    assert page1.context["page"].paginator.count == 30
    assert "Hamon Santoku Knife" not in page1.content.decode()
    assert "?category=tents&amp;page=2" in page1.content.decode()
    page2 = client.get(reverse("product_list"), {"category": "tents", "page": 2})
    assert len(page2.context["page"].object_list) == 6
    everything = client.get(reverse("product_list"))
    assert everything.context["page"].paginator.count == 31


def test_unknown_category_is_not_found(client: Client, catalogue: list) -> None:
    assert client.get(reverse("product_list"), {"category": "nope"}).status_code == 404


def test_product_page_shows_the_product_and_records_the_view(client: Client,
                                                             catalogue: list) -> None:
    knife = catalogue[-1]
    response = client.get(knife.get_absolute_url())
    html = response.content.decode()
    assert response.status_code == 200
    assert "Hamon Santoku Knife" in html and "$59.99" in html
    assert reverse("buy_now", args=[knife.pk]) in html
    assert reverse("cart_add", args=[knife.pk]) in html
    view = Event.objects.get(kind=EventKind.VIEW)
    assert view.product_id == str(knife.pk) and view.session_key == client.session.session_key


def test_product_text_is_escaped(client: Client, catalogue: list) -> None:
    Product.objects.filter(pk=catalogue[0].pk).update(
        title="<script>alert('t')</script>", description="<b>bold</b>", brand="<i>x</i>"
    )
    for url in (catalogue[0].get_absolute_url(), reverse("product_list")):
        html = client.get(url).content.decode()
        assert "<script>alert" not in html and "<b>bold" not in html and "<i>x" not in html
    assert "&lt;script&gt;" in client.get(catalogue[0].get_absolute_url()).content.decode()


def test_search_finds_by_text_and_records_the_search(client: Client, catalogue: list) -> None:
    reset_recs_caches()  # the plugin's search index of the previous test's catalogue
    response = client.get(reverse("search"), {"q": "  santoku  "})
    found = [item.product.title for item in response.context["results"].items]
    assert found[0] == "Hamon Santoku Knife"
    assert Event.objects.get(kind=EventKind.SEARCH).query == "santoku"
    by_brand = client.get(reverse("search"), {"q": "wildcamp"})
    brands = {item.product.brand for item in by_brand.context["results"].items}
    assert len(by_brand.context["results"].items) == 24 and brands == {"Wildcamp"}
    assert Event.objects.filter(kind=EventKind.SEARCH).count() == 2


def test_empty_search_shows_the_form_only(client: Client, catalogue: list) -> None:
    reset_recs_caches()
    response = client.get(reverse("search"), {"q": "   "})
    assert response.status_code == 200 and response.context["results"] is None
    assert not Event.objects.filter(kind=EventKind.SEARCH).exists()
    hostile = client.get(reverse("search"), {"q": "<script>x</script>"}).content.decode()
    assert "<script>x" not in hostile and "&lt;script&gt;x" in hostile


def test_login_page_logs_a_shopper_in(client: Client, shopper: object) -> None:
    assert client.get(reverse("login")).status_code == 200
    response = client.post(reverse("login"), {"username": "shopper1", "password": "shopper"})
    assert response.status_code == 302 and response.url == "/"
    assert client.get(reverse("order_list")).status_code == 200
    wrong = client.post(reverse("login"), {"username": "shopper1", "password": "nope"})
    assert wrong.status_code == 200 and wrong.context["form"].errors


def test_buying_needs_a_login(client: Client, catalogue: list) -> None:
    knife = catalogue[-1]
    response = client.post(reverse("buy_now", args=[knife.pk]), {"quantity": 1})
    assert response.status_code == 302
    assert response.url == f"{reverse('login')}?next={knife.get_absolute_url()}"
    checkout = client.post(reverse("checkout"))
    assert checkout.url.startswith(reverse("login"))
    assert not Order.objects.exists()
    assert client.get(reverse("buy_now", args=[knife.pk])).status_code == 405


def test_buy_now_creates_an_order_and_a_purchase_event(client: Client, catalogue: list,
                                                      shopper: object) -> None:
    knife = catalogue[-1]
    client.force_login(shopper)
    response = client.post(reverse("buy_now", args=[knife.pk]), {"quantity": 1})
    assert response.url == reverse("order_list")
    line = OrderLine.objects.get()
    assert (line.order.user, line.product, line.quantity) == (shopper, knife, 1)
    knife.refresh_from_db()
    assert knife.stock == 0
    purchase = Event.objects.get(kind=EventKind.PURCHASE)
    assert (purchase.user, purchase.product_id) == (shopper, str(knife.pk))
    # The last one is gone: a second purchase is refused and leaves no empty order behind.
    again = client.post(reverse("buy_now", args=[knife.pk]), {"quantity": 1}, follow=True)
    assert "not available" in again.content.decode()
    assert Order.objects.count() == 1


def test_cart_then_checkout(client: Client, catalogue: list, shopper: object) -> None:
    tent, knife = catalogue[0], catalogue[-1]
    client.post(reverse("cart_add", args=[tent.pk]), {"quantity": 2})
    client.post(reverse("cart_add", args=[knife.pk]), {"quantity": 1})
    cart = client.get(reverse("cart"))
    assert cart.context["total"] == Decimal("2") * tent.price + knife.price
    assert Event.objects.filter(kind=EventKind.ADD_TO_CART).count() == 2

    client.force_login(shopper)
    assert client.post(reverse("checkout")).url == reverse("order_list")
    order = Order.objects.get()
    assert {(line.product_id, line.quantity) for line in order.lines.all()} == {
        (tent.pk, 2), (knife.pk, 1)
    }
    assert Event.objects.filter(kind=EventKind.PURCHASE, user=shopper).count() == 2
    assert client.get(reverse("cart")).context["lines"] == []


@pytest.mark.parametrize("quantity", ["0", "11", "two", ""])
def test_bad_quantity_is_refused(client: Client, catalogue: list, quantity: str) -> None:
    tent = catalogue[0]
    response = client.post(reverse("cart_add", args=[tent.pk]), {"quantity": quantity},
                           follow=True)
    assert "Choose a quantity from 1 to 10" in response.content.decode()
    assert client.get(reverse("cart")).context["lines"] == []
    assert not Event.objects.filter(kind=EventKind.ADD_TO_CART).exists()
