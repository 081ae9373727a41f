"""``{% record_view product %}``: records that the current shopper viewed a product page.

    {% load shop_recs_events %}
    {% record_view product %}

It renders nothing, needs ``django.template.context_processors.request``, and never breaks the
page: a failure is logged. A page served from a full-page cache is not rendered, so it is not
recorded either; call ``shop_recs.events.record_event`` from the view in that case.
"""

from __future__ import annotations

import logging
from typing import Any

from django import template
from django.db import DatabaseError

from ..events import EventError, record_event, request_shopper
from ..models import EventKind

logger = logging.getLogger(__name__)
register = template.Library()


@register.simple_tag(takes_context=True)
def record_view(context: dict[str, Any], product: Any) -> str:
    request = context.get("request")
    if request is None:
        logger.warning(
            "shop_recs: {%% record_view %%} needs the 'request' context processor; "
            "view of %r not recorded", product,
        )
        return ""
    try:
        record_event(kind=EventKind.VIEW, product=product, **request_shopper(request))
    except (EventError, DatabaseError) as exc:
        logger.warning("shop_recs: view of %r not recorded: %s", product, exc)
    return ""
