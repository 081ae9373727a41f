"""Personalised search: products by words and by meaning, fused, then nudged by the shopper.

    results = search(Shopper.from_request(request), "cofee grinder", limit=20)
    record_search(request, results, channel="web")
    results.searched   # "coffee grinder": what was searched after spelling correction
    for item in results.items: ...   # RecommendedItem, as in every other list

Each web process keeps a ``SearchIndex`` of the available products (rebuilt when they or the
active model change, or every SEARCH_INDEX_REFRESH_SECONDS):

* words: BM25 over the adapter's product texts in memory, or PostgreSQL full-text search over
  the same fields (SEARCH_KEYWORD_BACKEND);
* meaning: the catalogue's text embeddings, taken from the active model version (it stores the
  embeddings it was trained with) and computed with the same encoder, disk-cached, for products
  it does not know; the query is embedded once (the encoder keeps recent queries);
* typos: unknown query words are corrected against the catalogue's own words.

Ranking is ``recsys_core.search`` (the code ``benchmarks.search`` measures); the shopper's
behaviour then re-ranks the best SEARCH_RERANK_DEPTH matches, lightly: the recommender's score
of each product given their live history, or, without a model, how much of their history is in
the product's category. The shop's rules (availability, RERANK_HOOK) apply as for every list.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection
from django.db.models import CharField, Count
from django.db.models.functions import Cast, Coalesce, Lower
from django.http import HttpRequest
from django.utils import timezone

from recsys_core.search import HybridSearch, Suggester, personalise, single_threaded, words

from ..adapter import get_adapter
from ..conf import recs_settings
from ..events import EventError, record_event, request_shopper
from ..models import Event, EventKind
from ..serving import LoadedModel
from .catalog import CatalogSnapshot, catalog, categories_of
from .feedback import record_impression
from .items import Candidate, Reason, RecommendationList
from .new_products import with_new_products
from .recommendations import _assemble, _Computed, active_model, clamp_limit, known_items
from .refreshed import Refreshed
from .rules import Rules, apply_rules, hides_purchases
from .shopper import History, Shopper, load_history

logger = logging.getLogger(__name__)

PLACEMENT = "search"
# Past queries kept for suggestions (the most frequent ones).
MAX_POPULAR_QUERIES = 5000
# Rows PostgreSQL full-text search returns per query; the rest of the catalogue scores 0 there.
DATABASE_MATCHES = 1000


class SearchQueryError(ValueError):
    """The query is empty or too long (the API answers 400 with this message)."""


def clean_query(raw: Any) -> str:
    """The query with runs of white space collapsed; SearchQueryError if there is nothing to
    search for or it is longer than SEARCH_MAX_QUERY_CHARS."""
    if not isinstance(raw, str):
        raise SearchQueryError("The query must be text.")
    text = " ".join(raw.split())
    if not text:
        raise SearchQueryError("The query is empty: type what you are looking for.")
    limit = recs_settings.SEARCH_MAX_QUERY_CHARS
    if len(text) > limit:
        raise SearchQueryError(f"The query is {len(text)} characters long; at most {limit} are "
                               "allowed.")
    return text


@dataclass
class SearchResults:
    query: str  # as typed (white space collapsed)
    searched: str  # after spelling correction
    results: RecommendationList

    @property
    def corrected(self) -> bool:
        return self.searched != self.query

    @property
    def items(self) -> list:
        return self.results.items


# --- The index --------------------------------------------------------------------------------


@dataclass
class SearchIndex:
    """The available products as the search ranks them (one per process at a time)."""

    product_ids: list[str]
    positions: dict[str, int]
    categories: dict[str, np.ndarray]  # category id -> positions of its products
    search: HybridSearch
    suggester: Suggester
    model_version_id: int | None
    available: frozenset[str]
    # The catalogue snapshot whose products were last found equal to these (``_outdated``).
    checked_against: CatalogSnapshot | None = None
    # Set while products without an embedding are being embedded in the background.
    embedding: threading.Thread | None = None

    def category_mask(self, category: str) -> np.ndarray:
        mask = np.zeros(len(self.product_ids), dtype=bool)
        mask[self.categories.get(category, np.zeros(0, dtype=np.int64))] = True
        return mask


def title_field() -> str:
    return recs_settings.SEARCH_TITLE_FIELD or recs_settings.PRODUCT_TEXT_FIELDS[0]


def build_index(model: LoadedModel | None) -> SearchIndex:
    """Read the available products' texts, titles and categories; words, typos, embeddings."""
    adapter = get_adapter()
    queryset = adapter.available_products()
    texts = adapter.texts_for(queryset)
    product_ids = list(texts)
    titles = {str(pk): "" if t is None else str(t)
              for pk, t in queryset.values_list("pk", title_field())}
    category_of = adapter.categories_for(queryset)
    members: dict[str, list[int]] = {}
    for position, product_id in enumerate(product_ids):
        category = category_of.get(product_id)
        if category is not None:
            members.setdefault(category, []).append(position)
    documents = [texts[pid] for pid in product_ids]
    title_list = [titles.get(pid, "") for pid in product_ids]
    embeddings, missing = _known_embeddings(product_ids, model)
    if embeddings is not None and len(missing) and (
        len(missing) <= recs_settings.SEARCH_INLINE_EMBED_LIMIT
    ):
        embeddings[missing] = _encode([documents[i] for i in missing])
        missing = missing[:0]
    index = SearchIndex(
        product_ids=product_ids,
        positions={pid: i for i, pid in enumerate(product_ids)},
        categories={c: np.array(p, dtype=np.int64) for c, p in members.items()},
        search=HybridSearch(documents, embeddings, titles=title_list,
                            keyword_weight=recs_settings.SEARCH_KEYWORD_WEIGHT),
        suggester=Suggester(title_list),
        model_version_id=model.version_id if model is not None else None,
        available=frozenset(product_ids),
    )
    if embeddings is not None and len(missing):
        index.embedding = threading.Thread(
            target=_embed_in_background, args=(index, embeddings, missing, documents),
            name="shop-recs-search-embeddings", daemon=True,
        )
        index.embedding.start()
    return index


def _known_embeddings(
    product_ids: list[str], model: LoadedModel | None
) -> tuple[np.ndarray | None, np.ndarray]:
    """(embedding rows, positions still without one); (None, []) when there is no encoder.

    Rows come from the active model when it was trained with the encoder this process uses
    (vectors of two encoders are not comparable); the rest are left for the encoder.
    """
    encoder = _encoder()
    if encoder is None:
        return None, np.zeros(0, dtype=np.int64)
    matrix = np.zeros((len(product_ids), encoder.dim), dtype=np.float32)
    have = np.zeros(len(product_ids), dtype=bool)
    recommender = model.recommender if model is not None else None
    table = getattr(recommender, "text_embeddings", None)
    if table is not None and table.shape[1] == encoder.dim and (
        not recommender.text_model_id or recommender.text_model_id == encoder.model_id
    ):
        item_ids = recommender.item_ids
        offset = table.shape[0] - len(item_ids)  # 1 when row 0 is the padding item
        row_of = {item: offset + i for i, item in enumerate(item_ids)}
        for position, product_id in enumerate(product_ids):
            row = row_of.get(product_id)
            if row is not None:
                matrix[position] = table[row]
                have[position] = True
    return matrix, np.flatnonzero(~have)


def _embed_in_background(index: SearchIndex, embeddings: np.ndarray, missing: np.ndarray,
                         documents: list[str]) -> None:
    """Embed the rest of a large catalogue, then let the index rank those products by meaning
    too (until then they are found by their words)."""
    started = time.monotonic()
    try:
        embeddings[missing] = _encode([documents[i] for i in missing])
    except Exception:
        logger.exception("shop_recs: embedding %d products for search failed", len(missing))
        return
    index.search.set_embeddings(embeddings)
    logger.info("shop_recs: %d products embedded for search in %.0f s", len(missing),
                time.monotonic() - started)


def _encoder():
    """The process's text encoder, or None (logged) when it cannot be loaded: words only."""
    from ..registry import text_encoder

    try:
        return text_encoder()
    except Exception:
        logger.exception("shop_recs: the text encoder cannot be loaded; search by words only")
        return None


def _encode(texts: list[str]) -> np.ndarray:
    encoder = _encoder()
    if encoder is None:
        raise RuntimeError("no text encoder")
    return encoder.encode(texts)


def _current_index() -> SearchIndex:
    snapshot = catalog.get()
    index = build_index(active_model())
    index.checked_against = snapshot
    return index


def _outdated(index: SearchIndex) -> bool:
    """A new active model version, or available products that changed since it was built."""
    model = active_model()
    if (model.version_id if model is not None else None) != index.model_version_id:
        return True
    snapshot = catalog.get()
    if snapshot is not index.checked_against:  # a new snapshot: compare its products once
        if snapshot.available != index.available:
            return True
        index.checked_against = snapshot
    return False


# Each process's index: built on first use (that request waits), then rebuilt in a background
# thread when the active model or the available products change, or every
# SEARCH_INDEX_REFRESH_SECONDS (for edited texts); searches use the previous index meanwhile.
search_index: Refreshed[SearchIndex] = Refreshed(
    _current_index, lambda: recs_settings.SEARCH_INDEX_REFRESH_SECONDS, "search index",
    outdated=_outdated,
)


# --- Searching --------------------------------------------------------------------------------


def search(
    shopper: Shopper, query: Any, limit: int | None = None, *, category: str | None = None,
) -> SearchResults:
    """The best products for a query, for this shopper. SearchQueryError on an empty or overlong
    query, ValueError on a bad limit."""
    text = clean_query(query)
    limit = clamp_limit(limit)
    index = search_index.get()
    searched = index.search.correct(text).text
    vector = _query_vector(searched) if index.search.dense is not None else None
    keyword = _database_keyword_scores(index, searched) if _keyword_in_database() else None
    mask = index.category_mask(category) if category is not None else None
    depth = max(recs_settings.SEARCH_RERANK_DEPTH, 2 * limit)
    ranked = index.search.search(searched, vector, depth, mask=mask, keyword_scores=keyword)
    relevant = ranked.scores > 0  # a product that matches neither words nor meaning at all
    product_ids = [index.product_ids[i] for i in ranked.indices[relevant]]
    scores = ranked.scores[relevant]

    snapshot = catalog.get()
    history = load_history(shopper)
    # With the products added since training placed, so that the model does not rank a new
    # product as the one the shopper likes least.
    model = with_new_products(active_model())
    preference, source, version = _preference(product_ids, history, model, snapshot)
    if preference is not None:
        scores = personalise(scores, preference, recs_settings.SEARCH_PERSONAL_WEIGHT)
    order = np.lexsort((np.arange(len(product_ids)), -scores))
    candidates = [Candidate(product_ids[i], float(scores[i]), Reason(PLACEMENT)) for i in order]
    purchased = history.purchased if hides_purchases(PLACEMENT) else frozenset()
    rules = Rules(PLACEMENT, shopper, purchased=purchased, category=category)
    kept = apply_rules(candidates, snapshot, rules)
    results = _assemble(PLACEMENT, _Computed(candidates, source, version), kept, limit, snapshot)
    return SearchResults(query=text, searched=searched, results=results)


def _query_vector(text: str) -> np.ndarray | None:
    encoder = _encoder()
    if encoder is None:
        return None
    with single_threaded():
        return encoder.encode_query(text)


def _keyword_in_database() -> bool:
    backend = recs_settings.SEARCH_KEYWORD_BACKEND
    if backend == "memory":
        return False
    if backend == "postgres":
        if connection.vendor != "postgresql":
            raise ImproperlyConfigured(
                'SHOP_RECS["SEARCH_KEYWORD_BACKEND"] is "postgres" but the database is '
                f"{connection.vendor}; use \"auto\" or \"memory\"."
            )
        return True
    if backend != "auto":
        raise ImproperlyConfigured(
            f'SHOP_RECS["SEARCH_KEYWORD_BACKEND"] is {backend!r}; expected "auto", "memory" '
            'or "postgres".'
        )
    return connection.vendor == "postgresql"


def _database_keyword_scores(index: SearchIndex, query: str) -> np.ndarray | None:
    """PostgreSQL's full-text rank of each indexed product (title words weigh most), or None
    (logged; BM25 is used) when the database cannot answer."""
    from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector

    scores = np.zeros(len(index.product_ids), dtype=np.float32)
    # Only letters and digits reach the raw tsquery, so no query can break its syntax; the
    # terms are OR-ed, as BM25 does, and the fusion with meaning sorts out the rest.
    terms = words(query, fold_accents=False)
    if not terms:
        return scores
    config = recs_settings.SEARCH_PG_CONFIG
    title = title_field()
    others = [f for f in recs_settings.PRODUCT_TEXT_FIELDS if f != title]
    vector = SearchVector(title, weight="A", config=config)
    if others:
        vector = vector + SearchVector(*others, weight="B", config=config)
    ts_query = SearchQuery(" | ".join(terms), search_type="raw", config=config)
    try:
        rows = list(
            get_adapter().available_products()
            .annotate(shop_recs_rank=SearchRank(vector, ts_query))
            .filter(shop_recs_rank__gt=0)
            .order_by("-shop_recs_rank", "pk")
            .values_list("pk", "shop_recs_rank")[:DATABASE_MATCHES]
        )
    except DatabaseError:
        logger.exception("shop_recs: full-text search failed; ranking words with BM25")
        return None
    for pk, rank in rows:
        position = index.positions.get(str(pk))
        if position is not None:
            scores[position] = max(scores[position], rank)
    return scores


def _preference(
    product_ids: list[str], history: History, model: LoadedModel | None,
    snapshot: CatalogSnapshot,
) -> tuple[np.ndarray | None, str, str]:
    """(how much the shopper likes each product, list source, model version) from the model,
    or from the categories of their history; (None, "search", "") for a shopper with none."""
    if not history or not product_ids:
        return None, PLACEMENT, ""
    if model is not None and known_items(model).intersection(history.product_ids):
        try:
            scores = model.recommender.score(list(history.product_ids), product_ids,
                                             kinds=list(history.kinds))
        except Exception:
            logger.exception("shop_recs: model %s failed to score search results; using the "
                             "shopper's categories", model.label)
        else:
            return scores, f"{PLACEMENT}+model", model.label
    seen = [c for c in categories_of(history.product_ids, snapshot).values() if c is not None]
    if not seen:
        return None, PLACEMENT, ""
    share = {c: seen.count(c) / len(seen) for c in set(seen)}
    category_of = categories_of(product_ids, snapshot)
    affinity = np.array([share.get(category_of.get(pid) or "", 0.0) for pid in product_ids],
                        dtype=np.float32)
    return affinity, f"{PLACEMENT}+categories", ""


# --- Recording and suggestions ----------------------------------------------------------------


def record_search(request: HttpRequest, results: SearchResults, *, channel: str) -> None:
    """Store the search as the shopper's event (popular queries, training) and its results as
    an impression (click-through of search). Never raises: a page is served regardless."""
    context = {"channel": channel, "n": len(results.results),
               "impression_id": results.results.impression_id}
    if results.corrected:
        context["searched"] = results.searched[:200]
    try:
        record_event(kind=EventKind.SEARCH, query=results.query[:500], context=context,
                     **request_shopper(request))
    except (EventError, DatabaseError) as exc:
        logger.warning("shop_recs: search not recorded: %s", exc)
    record_impression(request, results.results, channel=channel)


def _popular_queries() -> list[str]:
    """Queries of the last SEARCH_SUGGESTION_DAYS typed by enough different shoppers."""
    since = timezone.now() - timedelta(days=recs_settings.SEARCH_SUGGESTION_DAYS)
    shopper = Coalesce(Cast("user_id", output_field=CharField()), "session_key")
    rows = (
        Event.objects.filter(kind=EventKind.SEARCH, timestamp__gte=since)
        .exclude(query="")
        .annotate(lowered=Lower("query"))
        .order_by()
        .values("lowered")
        .annotate(shoppers=Count(shopper, distinct=True), searches=Count("id"))
        .filter(shoppers__gte=recs_settings.SEARCH_SUGGESTION_MIN_SHOPPERS)
        .order_by("-searches", "lowered")
        .values_list("lowered", flat=True)[:MAX_POPULAR_QUERIES]
    )
    return list(rows)


# Past queries, most searched first, rebuilt in the background every POPULARITY_REFRESH_SECONDS.
popular_queries: Refreshed[list[str]] = Refreshed(
    _popular_queries, lambda: recs_settings.POPULARITY_REFRESH_SECONDS, "popular queries"
)


def suggest(prefix: Any, limit: int | None = None) -> list[str]:
    """Completions of a partly typed query: popular past queries, then product titles."""
    text = clean_query(prefix)
    limit = clamp_limit(limit)
    index = search_index.get()
    return index.suggester.suggest(text, limit, popular_queries=popular_queries.get())
