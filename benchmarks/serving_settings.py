"""Settings of the serving benchmark: the demo shop's, served the way a shop would run it.

DEBUG off, PostgreSQL (DATABASE_URL) and Redis as the shared cache (REDIS_CACHE_URL), both set by
``benchmarks.serving`` before Django starts, and no API throttling: the load comes from one
address on purpose. ``SERVING_GC_FREEZE`` follows SHOP_RECS_SERVING_GC_FREEZE ("0" with
``--no-gc-freeze``, to compare); ``KEEP_FRESH_SECONDS`` follows SHOP_RECS_KEEP_FRESH_SECONDS when it
is set (``benchmarks.serving_pause`` compares).
"""

import os

from demo.settings import *  # noqa: F403
from demo.settings import LOGGING, REST_FRAMEWORK, SHOP_RECS

DEBUG = False
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {"shop_recs": None, "shop_recs_events": None},
}
LOGGING = {**LOGGING, "loggers": {"shop_recs": {"handlers": ["console"], "level": "WARNING"}}}
SHOP_RECS = {**SHOP_RECS,
             "SERVING_GC_FREEZE": os.environ.get("SHOP_RECS_SERVING_GC_FREEZE", "1") == "1"}
if "SHOP_RECS_KEEP_FRESH_SECONDS" in os.environ:
    SHOP_RECS["KEEP_FRESH_SECONDS"] = float(os.environ["SHOP_RECS_KEEP_FRESH_SECONDS"])
