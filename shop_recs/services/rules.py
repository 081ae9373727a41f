"""The shop's business rules, applied to every list in the same order.

1. only products the adapter calls available (the catalogue snapshot; re-checked when shown);
2. never the products the caller excludes (the page's own product, an ``exclude`` list);
3. not what the shopper already bought, for the placements in EXCLUDE_PURCHASED;
4. only the requested category, when one is given;
5. the shop's RERANK_HOOK, to boost, bury or drop products::

       # settings.SHOP_RECS["RERANK_HOOK"] = "myshop.recs.promote_house_brand"
       def promote_house_brand(shopper, placement, candidates):
           for candidate in candidates:
               if candidate.product_id in HOUSE_BRAND_IDS:
                   candidate.score += 1.0              # boost (a negative number buries)
           return sorted(candidates, key=lambda c: c.score, reverse=True)

   It gets ``Candidate`` objects (product_id, score, reason, category) and returns them in the
   order to show; products it adds still pass rules 1-4;
6. at most MAX_PER_CATEGORY products of one category (diversity).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from ..conf import recs_settings
from .catalog import CatalogSnapshot
from .items import Candidate
from .shopper import Shopper

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rules:
    placement: str
    shopper: Shopper
    exclude: frozenset[str] = frozenset()
    purchased: frozenset[str] = frozenset()  # only given for placements that hide purchases
    category: str | None = None
    max_per_category: int | None = None
    rerank: bool = True


def hides_purchases(placement: str) -> bool:
    return placement in recs_settings.EXCLUDE_PURCHASED


def apply_rules(
    candidates: Iterable[Candidate], snapshot: CatalogSnapshot, rules: Rules
) -> list[Candidate]:
    """The candidates that may be shown, in the order to show them (not yet cut to a limit)."""
    kept = _admissible(candidates, snapshot, rules)
    hook = recs_settings.RERANK_HOOK
    if rules.rerank and hook is not None:
        try:
            kept = _admissible(hook(rules.shopper, rules.placement, kept), snapshot, rules)
        except Exception:  # the shop's code must not take the page down with it
            logger.exception("shop_recs: RERANK_HOOK failed for %s; list left as ranked",
                             rules.placement)
    cap = rules.max_per_category
    return kept if cap is None else _cap_per_category(kept, cap)


def _admissible(
    candidates: Iterable[Candidate], snapshot: CatalogSnapshot, rules: Rules
) -> list[Candidate]:
    seen: set[str] = set()
    kept: list[Candidate] = []
    for candidate in candidates:
        product_id = candidate.product_id
        if (
            product_id in seen
            or product_id not in snapshot.available
            or product_id in rules.exclude
            or product_id in rules.purchased
        ):
            continue
        candidate.category = snapshot.category_of.get(product_id)
        if rules.category is not None and candidate.category != rules.category:
            continue
        seen.add(product_id)
        kept.append(candidate)
    return kept


def _cap_per_category(candidates: list[Candidate], cap: int) -> list[Candidate]:
    counts: dict[str | None, int] = {}
    kept = []
    for candidate in candidates:
        if candidate.category is not None:
            if counts.get(candidate.category, 0) >= cap:
                continue
            counts[candidate.category] = counts.get(candidate.category, 0) + 1
        kept.append(candidate)
    return kept
