"""The demo shop's pages: catalogue, product, search, a session cart, checkout and orders.

Written the way an ordinary shop is written; the plugin only comes in where any shop would call
it: the shopper's add-to-cart events go through ``shop_recs.events.record_event``, searches
through the plugin's search service, product views through the ``{% record_view %}`` tag, and
purchases through the plugin's receiver on the order lines that checkout saves.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Page, Paginator
from django.db import transaction
from django.db.models import F, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from shop_recs.events import record_event, request_shopper
from shop_recs.models import EventKind
from shop_recs.services import Shopper
from shop_recs.services.search import record_search
from shop_recs.services.search import search as search_products

from .models import Category, Order, OrderLine, Product

PAGE_SIZE = 24
MAX_QUERY_LENGTH = 200
MAX_QUANTITY = 10
CART_SESSION_KEY = "cart"  # {"<product pk>": quantity}


class OutOfStock(Exception):
    """Raised inside the checkout transaction so that no part of the order is kept."""


def _page(request: HttpRequest, products: QuerySet[Product]) -> Page:
    return Paginator(products, PAGE_SIZE).get_page(request.GET.get("page"))


def _on_sale() -> QuerySet[Product]:
    return Product.objects.filter(active=True).select_related("category")


@require_GET
def product_list(request: HttpRequest) -> HttpResponse:
    products = _on_sale()
    category = None
    if slug := request.GET.get("category"):
        category = get_object_or_404(Category, slug=slug)
        products = products.filter(category=category)
    return render(request, "demo/product_list.html", {
        "page": _page(request, products),
        "category": category,
        "categories": Category.objects.all(),
    })


@require_GET
def product_detail(request: HttpRequest, pk: int) -> HttpResponse:
    product = get_object_or_404(Product.objects.select_related("category"), pk=pk)
    return render(request, "demo/product_detail.html", {
        "product": product,
        "max_quantity": max(0, min(MAX_QUANTITY, product.stock)),
    })


@require_GET
def search(request: HttpRequest) -> HttpResponse:
    """The plugin's personalised search: words and meaning, typos corrected, the shopper's
    taste re-ranking the best matches; the search and the results shown are recorded."""
    query = " ".join(request.GET.get("q", "").split())[:MAX_QUERY_LENGTH]
    results = None
    if query:
        results = search_products(Shopper.from_request(request), query, PAGE_SIZE)
        record_search(request, results, channel="web")
    return render(request, "demo/search.html", {"q": query, "results": results})


# --- Cart and buying ------------------------------------------------------------------------


def _quantity(request: HttpRequest) -> int | None:
    """The posted quantity, or None when it is not a whole number from 1 to MAX_QUANTITY."""
    try:
        quantity = int(request.POST.get("quantity", "1"))
    except ValueError:
        return None
    return quantity if 1 <= quantity <= MAX_QUANTITY else None


def _cart(request: HttpRequest) -> dict[str, int]:
    return dict(request.session.get(CART_SESSION_KEY, {}))


@require_POST
def cart_add(request: HttpRequest, pk: int) -> HttpResponse:
    product = get_object_or_404(Product, pk=pk, active=True)
    quantity = _quantity(request)
    if quantity is None:
        messages.error(request, f"Choose a quantity from 1 to {MAX_QUANTITY}.")
        return redirect(product)
    cart = _cart(request)
    cart[str(product.pk)] = min(MAX_QUANTITY, cart.get(str(product.pk), 0) + quantity)
    request.session[CART_SESSION_KEY] = cart
    record_event(kind=EventKind.ADD_TO_CART, product=product, quantity=quantity,
                 **request_shopper(request))
    messages.success(request, f"Added {quantity} × {product.title} to your cart.")
    return redirect("cart")


@require_POST
def cart_remove(request: HttpRequest, pk: int) -> HttpResponse:
    cart = _cart(request)
    cart.pop(str(pk), None)
    request.session[CART_SESSION_KEY] = cart
    return redirect("cart")


@require_GET
def cart(request: HttpRequest) -> HttpResponse:
    quantities = _cart(request)
    products = Product.objects.select_related("category").in_bulk([int(k) for k in quantities])
    lines = [
        {"product": products[int(pk)], "quantity": quantity,
         "total": products[int(pk)].price * quantity}
        for pk, quantity in quantities.items() if int(pk) in products
    ]
    return render(request, "demo/cart.html", {
        "lines": lines, "total": sum((line["total"] for line in lines), start=0),
    })


def _place_order(request: HttpRequest, wanted: dict[Product, int]) -> Order | None:
    """Create the order if every product is still on sale in that quantity; else say why."""
    try:
        with transaction.atomic():
            order = Order.objects.create(user=request.user)
            for product, quantity in wanted.items():
                # A conditional UPDATE: two shoppers cannot both buy the last one.
                taken = Product.objects.filter(
                    pk=product.pk, active=True, stock__gte=quantity
                ).update(stock=F("stock") - quantity)
                if not taken:
                    raise OutOfStock(product.title)
                # Saved one by one so that the plugin's receiver records each purchase.
                OrderLine.objects.create(order=order, product=product, quantity=quantity)
    except OutOfStock as exc:
        messages.error(request, f"Sorry, {exc} is not available in that quantity any more.")
        return None
    messages.success(request, f"Thank you! Order #{order.pk} is placed.")
    return order


@require_POST
def buy_now(request: HttpRequest, pk: int) -> HttpResponse:
    product = get_object_or_404(Product, pk=pk)
    if not request.user.is_authenticated:
        # Back to the product page after login: the purchase itself needs a fresh click.
        return redirect_to_login(product.get_absolute_url())
    quantity = _quantity(request)
    if quantity is None:
        messages.error(request, f"Choose a quantity from 1 to {MAX_QUANTITY}.")
        return redirect(product)
    order = _place_order(request, {product: quantity})
    return redirect("order_list") if order else redirect(product)


@require_POST
def checkout(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(reverse("cart"))
    quantities = _cart(request)
    products = Product.objects.in_bulk([int(k) for k in quantities])
    wanted = {products[int(pk)]: q for pk, q in quantities.items() if int(pk) in products}
    if not wanted:
        messages.error(request, "Your cart is empty.")
        return redirect("cart")
    if _place_order(request, wanted) is None:
        return redirect("cart")
    request.session[CART_SESSION_KEY] = {}
    return redirect("order_list")


@login_required
@require_GET
def order_list(request: HttpRequest) -> HttpResponse:
    orders = request.user.orders.prefetch_related("lines__product")[:50]
    return render(request, "demo/orders.html", {"orders": orders})
