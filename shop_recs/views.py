"""The click endpoint: recommendation links pass through it so that clicks are counted.

It redirects only to the product's own URL (``adapter.product_url``), found from the product id
signed into the token: nothing in the request can choose where it goes, so it cannot be abused
as an open redirect.
"""

from __future__ import annotations

import logging

from django.http import Http404, HttpRequest, HttpResponseRedirect
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .services import BadClickToken, UnsafeProductURL, record_click

logger = logging.getLogger(__name__)


@never_cache
@require_GET
def click(request: HttpRequest, token: str) -> HttpResponseRedirect:
    try:
        result = record_click(request, token, channel="web")
    except BadClickToken as exc:
        raise Http404(str(exc)) from None
    except LookupError as exc:
        raise Http404(str(exc)) from None
    except UnsafeProductURL as exc:
        logger.error("shop_recs: %s", exc)
        raise Http404("This product has no page on this site.") from None
    return HttpResponseRedirect(result.url)
