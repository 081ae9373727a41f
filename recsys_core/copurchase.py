"""Products bought together, counted from purchases: no model needed.

Two products are bought together when one shopper bought both at most ``window`` apart (one
order, or a second trip for the missing cable). Each shopper counts once per pair, so a reseller
buying a hundred of each cannot dominate. The whole purchase history is counted in one pass, so
a best-seller costs no more to serve than any other product.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable
from itertools import groupby
from operator import itemgetter
from typing import Any

# The purchases after each one that can pair with it: a shopper buying hundreds of items in one
# day (a reseller, a company account) adds at most this many pairs per purchase.
MAX_BASKET = 50


def count_co_purchases(
    purchases: Iterable[tuple[Hashable, str, Any]], window: Any, *, keep: int
) -> dict[str, list[tuple[str, int]]]:
    """Per product, the ``keep`` products most shoppers bought with it: (product, shoppers),
    most first, ties by product id.

    ``purchases`` are (shopper, product, time) with each shopper's rows together and in time
    order; ``window`` is in the unit of a difference of two times (a timedelta for datetimes).
    """
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for _, rows in groupby(purchases, key=itemgetter(0)):
        bought = [(time, product) for _, product, time in rows]
        pairs: set[tuple[str, str]] = set()
        for position, (time, product) in enumerate(bought):
            for later, other in bought[position + 1 : position + 1 + MAX_BASKET]:
                if later - time > window:
                    break
                if other != product:
                    pairs.add((product, other))
                    pairs.add((other, product))
        for product, other in pairs:
            counts[product][other] += 1
    return {
        product: sorted(others.items(), key=lambda pair: (-pair[1], pair[0]))[:keep]
        for product, others in counts.items()
    }
