"""The plugin's settings: one dict, ``settings.SHOP_RECS``, read through ``recs_settings``.

Modelled on DRF's ``api_settings``: every key has a documented default, unknown keys are an
error (a typo should not silently do nothing), and the accessor is reloaded when a test
overrides ``SHOP_RECS``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

DEFAULTS: dict[str, Any] = {
    # --- The host shop's models (see shop_recs.adapter.ShopAdapter) ---------------------
    # "app_label.ModelName" of the product model. Required.
    "PRODUCT_MODEL": None,
    # Fields (Django lookups allowed, e.g. "category__name") joined into a product's text.
    "PRODUCT_TEXT_FIELDS": ["title", "description"],
    # Field holding the product's category (a ForeignKey or a plain value); None: no categories.
    "PRODUCT_CATEGORY_FIELD": None,
    # Relations fetched with the products of a list (select_related), so that a template showing
    # product.category.name costs no query per item. None: the category field when it is a
    # ForeignKey; [] turns it off.
    "PRODUCT_SELECT_RELATED": None,
    # Filter (kwargs for .filter()) that selects the products that may be recommended.
    "PRODUCT_AVAILABLE_FILTER": {},
    # "app_label.ModelName" of an order line (one product bought in one order). None: no orders.
    "ORDER_LINE_MODEL": None,
    "ORDER_LINE_PRODUCT_FIELD": "product",
    "ORDER_LINE_USER_FIELD": "order__user",
    "ORDER_LINE_QUANTITY_FIELD": "quantity",
    "ORDER_LINE_TIME_FIELD": "order__created_at",
    # Record a purchase event whenever an order line is created.
    "RECORD_PURCHASES_ON_SAVE": True,
    # Dotted path of the adapter class; subclass ShopAdapter for unusual models.
    "ADAPTER": "shop_recs.adapter.ShopAdapter",
    # --- Events -------------------------------------------------------------------------
    # Largest JSON context stored with one event, in bytes.
    "MAX_EVENT_CONTEXT_BYTES": 2048,
    # Recommendation impressions are queued in the web process and written in one statement this
    # many seconds apart (and at exit), off the request path; 0: each is written in its request
    # (as it is anyway inside a transaction, e.g. ATOMIC_REQUESTS).
    "IMPRESSION_FLUSH_SECONDS": 1.0,
    # --- Model and training -------------------------------------------------------------
    # Local Hugging Face model path for product text; None: the bundled all-MiniLM-L6-v2.
    "TEXT_MODEL_PATH": None,
    # Local folder for the embedding cache and downloaded artifacts
    # (None: <MEDIA_ROOT>/shop_recs_cache).
    "LOCAL_CACHE_DIR": None,
    # Where model versions are stored (a path inside Django's default storage).
    "ARTIFACT_DIR": "shop_recs/models",
    # Training parameters passed to recsys_core (see recsys_core.config.TrainConfig).
    "TRAINING": {},
    # Celery queue that training jobs go to (run GPU workers with -Q recs-training).
    "TRAINING_QUEUE": "recs-training",
    # With CELERY_TASK_ALWAYS_EAGER: run training in a background thread of the web process
    # (demo) instead of blocking the request that started it.
    "EAGER_TRAINING_IN_BACKGROUND": False,
    # Only events of the last N days are used for training (None: all).
    "TRAINING_WINDOW_DAYS": None,
    # Hard time limit of one training run, in seconds.
    "TRAINING_TIME_LIMIT": 6 * 3600,
    # A worker that has not written a heartbeat for this long is taken for dead.
    "HEARTBEAT_TIMEOUT": 300,
    # A new version is activated only if it beats the active one (and popularity) by this
    # relative margin on held-out NDCG@10.
    "PROMOTION_MARGIN": 0.0,
    # Minimum events / shoppers needed before training is attempted.
    "MIN_TRAINING_EVENTS": 20,
    "MIN_TRAINING_USERS": 3,
    # How often a web process looks for a newly activated version, in seconds.
    "MODEL_RELOAD_INTERVAL": 5,
    # Threads of the numeric libraries (torch, and the BLAS under numpy) in a web process
    # (None: leave them as they are). One request is small work: the server's workers and
    # threads give the parallelism; more threads per request only make them wait on each other,
    # and idle BLAS threads spin on cores that other requests need.
    "SERVING_THREADS": 1,
    # After a web process loads a model version, move every object alive then (the model,
    # Django, torch) into the garbage collector's permanent generation, so that its full
    # collections stop walking them: each such walk stalls the requests behind it.
    "SERVING_GC_FREEZE": True,
    # --- Serving ------------------------------------------------------------------------
    "DEFAULT_LIMIT": 8,
    "MAX_LIMIT": 50,
    # At most this many products of one category in a list (None: no cap).
    "MAX_PER_CATEGORY": None,
    # Scenarios that hide products the shopper already bought.
    "EXCLUDE_PURCHASED": ["for_you", "similar", "bought_together", "ads"],
    # Dotted path of a function (shopper, placement, candidates) -> candidates, called after the
    # availability/exclusion rules and before the per-category cap: raise or lower
    # ``candidate.score`` (boost/bury), drop candidates, and return them in the order to show
    # (see shop_recs.services.rules.Candidate).
    "RERANK_HOOK": None,
    # Seconds a computed list is cached (per shopper; new events invalidate it).
    "CACHE_SECONDS": 300,
    # How many of the shopper's latest events the model reads.
    "HISTORY_LENGTH": 50,
    # Signed-in shoppers with an event in the last N days get their for-you candidates computed
    # ahead after each model activation (the shop_recs.precompute_for_you task; a beat entry
    # may run it more often), so that their next request skips the model unless they have done
    # something since (services/precomputed.py). None: always computed in the request.
    "PRECOMPUTE_ACTIVE_DAYS": 30,
    # Seconds those candidates are kept in the cache.
    "PRECOMPUTED_SECONDS": 24 * 3600,
    # Seconds each web process keeps its snapshot of available products and their categories
    # before it checks, in a background thread, whether they changed (one aggregate query; the
    # snapshot is read again when it did, and every 10 intervals in any case, for category
    # changes; requests meanwhile use the old one). Lists are re-checked against the database
    # when rendered, so a product that sells out between refreshes is still never shown.
    "CATALOG_REFRESH_SECONDS": 60,
    # Each process rebuilds what it refreshes (catalogue snapshot, new products' placement,
    # popularity rankings, search index) in the background on a timer when its interval is up,
    # while it has used it in the last N seconds, so that the first requests after a quiet spell
    # do not start those rebuilds all at once (a stall: README "Serving"); after a longer pause,
    # or with 0, the first request to find one too old starts its rebuild, in the background.
    "KEEP_FRESH_SECONDS": 3600,
    # Rank for-you, similar, bought-together and search lists with the products added since the
    # active model was trained placed in it by their text (each web process places them after the
    # catalogue refresh that finds them), so a new product can be recommended before the next
    # training. False: only after.
    "PLACE_NEW_PRODUCTS": True,
    # Multiplies the placed products' vectors: above 1 they score higher with the shoppers
    # whose taste their text suits, and take more for-you slots at some cost to the rest
    # (README "New products" has the measured trade-off); 1: as the model places them.
    "NEW_PRODUCT_BOOST": 1.0,
    # Fallback lists when there is no usable model: "popular" counts the last POPULAR_DAYS days
    # of events, "trending" the last TRENDING_HOURS hours; each process recomputes them in a
    # background thread every POPULARITY_REFRESH_SECONDS (one aggregate query over the window).
    "POPULAR_DAYS": 30,
    "TRENDING_HOURS": 48,
    "POPULARITY_REFRESH_SECONDS": 600,
    # Two purchases by the same shopper at most this many hours apart count as "bought together".
    "BOUGHT_TOGETHER_WINDOW_HOURS": 24,
    # A purchase schedules a co-purchase count this many seconds later (one at a time), so the
    # bought-together lists take in new purchases within about this long; None: counts are made
    # only by training runs, order imports and the shop_recs.count_co_purchases task.
    "CO_PURCHASE_COUNT_DELAY": 600,
    # A recommendation click is recorded only within this many seconds of the list being shown
    # (older links still lead to the product); stops replayed links from inflating CTR.
    "CLICK_TOKEN_MAX_AGE": 7 * 24 * 3600,
    # REST API throttle rates per scope, per signed-in user (per IP address for guests):
    # "shop_recs" for the lists, "shop_recs_events" for event and feedback posts. A rate in
    # REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] under the same scope name wins; None: no limit.
    "API_THROTTLE_RATES": {"shop_recs": "1200/min", "shop_recs_events": "600/min"},
    # Most events accepted in one POST to the events endpoint.
    "API_MAX_BATCH": 500,
    # --- Search (shop_recs.services.search) ----------------------------------------------
    # Words are matched by PostgreSQL full-text search ("postgres"), or by BM25 over an
    # in-memory index ("memory"); "auto": PostgreSQL's when the database is PostgreSQL.
    "SEARCH_KEYWORD_BACKEND": "auto",
    # Text search configuration (language) PostgreSQL stems and drops stop words with.
    "SEARCH_PG_CONFIG": "english",
    # Field of the product's title (matched with more weight, and completed by suggestions);
    # None: the first of PRODUCT_TEXT_FIELDS.
    "SEARCH_TITLE_FIELD": None,
    # Share of words in the fused score (the rest is meaning); 0.3 won a 2-fold
    # cross-validation on real shop queries (python -m benchmarks.search).
    "SEARCH_KEYWORD_WEIGHT": 0.3,
    # How much the shopper's behaviour moves results (added to fused scores on a 0..1 scale);
    # small, so that it reorders relevant products but never buries the best match.
    "SEARCH_PERSONAL_WEIGHT": 0.25,
    # How many of the best matches the shopper's behaviour re-ranks.
    "SEARCH_RERANK_DEPTH": 100,
    # Longest query accepted, in characters (longer ones get a 400).
    "SEARCH_MAX_QUERY_CHARS": 200,
    # Seconds a web process keeps its search index before rebuilding it for edited texts (it is
    # rebuilt sooner, in the background, when the available products or the active model change).
    "SEARCH_INDEX_REFRESH_SECONDS": 3600,
    # Products without a text embedding (none from the model) are embedded during the request
    # up to this many; more (a large shop before its first model) are embedded in a background
    # thread while words alone rank them.
    "SEARCH_INLINE_EMBED_LIMIT": 1000,
    # Past queries suggested as completions: from the last N days, and only those typed by at
    # least this many different shoppers (one shopper's query may be personal).
    "SEARCH_SUGGESTION_DAYS": 30,
    "SEARCH_SUGGESTION_MIN_SHOPPERS": 3,
    # --- Ads (shop_recs.services.ads) -----------------------------------------------------
    # How many ads a placement shows by default.
    "ADS_PER_PLACEMENT": 2,
    # Pacing: by a time of day a campaign may have spent its budget's share of the day so far
    # plus this share of the whole budget (so that a morning click is not refused outright).
    "ADS_PACING_SLACK": 0.1,
    # Hosts an ad's target URL may point to (e.g. ["shop.example", "partner.example"]);
    # None: any http(s) host. Targets are checked when a campaign is saved and again at redirect.
    "ADS_ALLOWED_TARGET_HOSTS": None,
}

# Settings that hold a dotted path to import.
IMPORT_STRINGS = {"ADAPTER", "RERANK_HOOK"}


class RecsSettings:
    """Attribute access to SHOP_RECS with defaults; dotted paths imported on first use."""

    def __init__(self, user_settings: dict[str, Any] | None = None) -> None:
        self._user_settings = user_settings
        self._cached: dict[str, Any] = {}

    @property
    def user_settings(self) -> dict[str, Any]:
        if self._user_settings is None:
            self._user_settings = dict(getattr(settings, "SHOP_RECS", {}) or {})
        return self._user_settings

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in DEFAULTS:
            raise AttributeError(f"Invalid shop_recs setting: {name!r}")
        if name in self._cached:
            return self._cached[name]
        value = self.user_settings.get(name, DEFAULTS[name])
        if name in IMPORT_STRINGS and isinstance(value, str):
            value = import_string(value)
        self._cached[name] = value
        return value

    def unknown_keys(self) -> list[str]:
        return sorted(set(self.user_settings) - set(DEFAULTS))

    def reload(self) -> None:
        self._user_settings = None
        self._cached.clear()


recs_settings = RecsSettings()


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "SHOP_RECS":
        recs_settings.reload()
        from .adapter import get_adapter

        get_adapter.cache_clear()


setting_changed.connect(_reload)
