"""What the service layer hands to template tags and API views.

A list is computed as ``Candidate``s (ids, scores and a reason *code*: cheap to cache and to
rerank), then turned into ``RecommendedItem``s (the host's product instance, the reason as text,
a signed click token) for the request at hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from django.db.models import Model
from django.urls import (
    NoReverseMatch,
    URLResolver,
    get_resolver,
    get_script_prefix,
    get_urlconf,
    reverse,
)

TITLE_CHARS = 60


class Placement:
    """The lists the plugin shows; each is a scenario for the business rules."""

    FOR_YOU = "for_you"
    SIMILAR = "similar"
    BOUGHT_TOGETHER = "bought_together"
    RECENTLY_VIEWED = "recently_viewed"
    ALL = (FOR_YOU, SIMILAR, BOUGHT_TOGETHER, RECENTLY_VIEWED)


@dataclass(frozen=True)
class Reason:
    """Why an item is in a list; rendered to text once the products are known.

    code: "history" (product_id = the shopper's item, kind = what they did with it),
    "similar_to" / "bought_with" / "goes_with" (product_id = the anchor product),
    "popular_in" / "new_in" (category), "trending", "recently_viewed".
    """

    code: str
    product_id: str = ""
    kind: str = ""
    category: str = ""


_VERBS = {
    "purchase": "Because you bought {title}",
    "add_to_cart": "Because you added {title} to your cart",
}
_TEMPLATES = {
    "history": "Because you viewed {title}",
    "similar_to": "Similar to {title}",
    "bought_with": "Often bought with {title}",
    "goes_with": "Goes well with {title}",
    "popular_in": "Popular in {category}",
    "new_in": "New in {category}",
    "trending": "Trending now",
    "recently_viewed": "You viewed this recently",
}
_NO_CATEGORY = {"popular_in": "Popular right now", "new_in": "New in the shop"}


def short_title(product: Model | None) -> str:
    """The product's name for a reason (its ``str()``), cut to a readable length."""
    title = " ".join(str(product).split()) if product is not None else ""
    return title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1].rstrip() + "…"


def reason_text(reason: Reason, products: dict[str, Model], category_name: str) -> str:
    """Plain text (never HTML): templates autoescape it, JSON carries it as a string."""
    template = _VERBS.get(reason.kind, _TEMPLATES["history"]) if reason.code == "history" else (
        _TEMPLATES.get(reason.code, "")
    )
    if "{title}" in template:
        title = short_title(products.get(reason.product_id))
        if not title:  # the product behind the reason is gone
            return "Picked for you" if reason.code == "history" else ""
        return template.format(title=title)
    if "{category}" in template:
        return template.format(category=category_name) if category_name else _NO_CATEGORY[
            reason.code
        ]
    return template


@dataclass
class Candidate:
    """A product in the making of a list; what ``RERANK_HOOK`` receives and returns."""

    product_id: str
    score: float
    reason: Reason
    category: str | None = None  # filled in by the rules from the catalogue snapshot


@dataclass(frozen=True)
class RecommendedItem:
    product: Model
    product_id: str
    score: float
    reason: str
    placement: str
    model_version: str  # the model's label ("v3"), or "" when a fallback chose the item
    position: int  # 1-based
    click_token: str
    product_url: str
    click_url: str  # the link to show (``click_links``)


_TOKEN_SLOT = "token"


def click_links() -> Callable[[str, str], str]:
    """(click token, product URL) -> the link to show: through the click endpoint, which
    records the click and redirects to the product; the product's own URL when the shop has not
    routed the endpoint.

    The endpoint's URL is reversed once per URLconf and script prefix, not once per item: a
    signed token is made of characters that a URL carries as they are, so the token takes the
    place of a stand-in.
    """
    parts = _click_url_parts(get_resolver(get_urlconf()), get_script_prefix())
    if parts is None:
        return lambda token, product_url: product_url
    head, tail = parts
    return lambda token, product_url: f"{head}{token}{tail}"


@lru_cache(maxsize=8)
def _click_url_parts(resolver: URLResolver, script_prefix: str) -> tuple[str, str] | None:
    """The click URL before and after the token; None when the endpoint is not routed. Keyed by
    the resolver, which Django replaces when the URLconf changes (``clear_url_caches``)."""
    try:
        url = reverse("shop_recs:click", urlconf=resolver.urlconf_name, args=[_TOKEN_SLOT])
    except NoReverseMatch:
        return None
    head, tail = url.rsplit(_TOKEN_SLOT, 1)
    return head, tail


@dataclass
class RecommendationList:
    """One list as shown: the items plus what the impression and the clicks record."""

    placement: str
    items: list[RecommendedItem]
    model_version: str  # "" when the list came from a fallback
    source: str  # "model", "popular", "co-purchase+model", "history", ...
    impression_id: str

    def __iter__(self) -> Iterator[RecommendedItem]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    @property
    def product_ids(self) -> list[str]:
        return [item.product_id for item in self.items]
