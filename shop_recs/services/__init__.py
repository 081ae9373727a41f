"""The one service layer behind the template tags and the REST API (neither has logic of its own).

    from shop_recs.services import Shopper, for_you, similar, record_impression

    recs = for_you(Shopper.from_request(request), limit=8)
    for item in recs:   # RecommendedItem: product, reason, click_url, ...
        ...
    record_impression(request, recs, channel="web")
"""

from .feedback import Click, UnsafeProductURL, record_click, record_impression
from .items import Candidate, Placement, Reason, RecommendationList, RecommendedItem
from .recommendations import (
    ProductNotFound,
    bought_together,
    clamp_limit,
    for_you,
    recently_viewed,
    similar,
)
from .shopper import History, Shopper, load_history
from .tokens import BadClickToken

__all__ = [
    "BadClickToken", "Candidate", "Click", "History", "Placement", "ProductNotFound", "Reason",
    "RecommendationList", "RecommendedItem", "Shopper", "UnsafeProductURL", "bought_together",
    "clamp_limit", "for_you", "load_history", "recently_viewed", "record_click",
    "record_impression", "similar",
]
