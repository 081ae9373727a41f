"""Signed click tokens: what a recommendation link carries to the click endpoint.

The token names the product, the list it was shown in and the model that chose it, signed with
the project's SECRET_KEY (``django.core.signing``). The click endpoint redirects only to the
product's own URL, looked up from the signed product id, so no URL from the request can ever be
a redirect target.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.core import signing

SALT = "shop_recs.click"


class BadClickToken(ValueError):
    """The token was not made by this site (or was altered)."""


@dataclass(frozen=True)
class ClickData:
    product_id: str
    placement: str
    model_version: str
    impression_id: str
    position: int


def make_click_token(data: ClickData) -> str:
    payload = [data.product_id, data.placement, data.model_version, data.impression_id,
               data.position, int(time.time())]
    # Not compressed: a payload this short never shrinks, and the attempt cost more than the
    # signature. ``loads`` reads compressed tokens too (those made by earlier releases).
    return signing.dumps(payload, salt=SALT)


def read_click_token(token: str, *, max_age: float) -> tuple[ClickData, bool]:
    """The token's data and whether it is still fresh enough (``max_age`` s) to count a click."""
    try:
        payload = signing.loads(token, salt=SALT)
        product_id, placement, model_version, impression_id, position, issued = payload
        data = ClickData(str(product_id), str(placement), str(model_version),
                         str(impression_id), int(position))
        fresh = time.time() - float(issued) <= max_age
    except (signing.BadSignature, TypeError, ValueError) as exc:
        raise BadClickToken("This recommendation link is invalid.") from exc
    return data, fresh
