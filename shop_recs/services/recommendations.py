"""The four lists, computed once for both the template tags and the REST API.

Each list is made in three steps:

1. **candidates**: the model's ranking for the shopper's live history or for a product, or a
   fallback when there is no usable model. Lists shared by many requests (bought together, a
   fallback's, a newcomer's) are cached under a key that holds the model version, so a newly
   activated model gives new lists at once; a personal list is made from the live history on
   every request, or read when a job computed it ahead for exactly that history
   (``precomputed.py``), and the model's similar products come from the neighbours it keeps;
2. **rules** (every request, cheap): availability, exclusions, purchases, category, the shop's
   rerank hook, the per-category cap (``rules.py``);
3. **items** (every request, one query): the host's product instances, re-checked for
   availability, with reason texts and signed click tokens.

A broken model (a corrupt artifact, an exception while scoring) is logged and replaced by a
fallback: a page never fails because of the recommender.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np
from django.db.models import Model
from django.utils import timezone

from ..adapter import get_adapter
from ..conf import recs_settings
from ..serving import LoadedModel, model_holder
from . import fallbacks, precomputed
from .cache import cached
from .catalog import CatalogSnapshot, catalog, categories_of, fetch_products
from .copurchase import co_purchase_counts
from .items import (
    Candidate,
    Placement,
    Reason,
    RecommendationList,
    RecommendedItem,
    click_links,
    reason_text,
)
from .new_products import with_new_products
from .rules import Rules, apply_rules, hides_purchases
from .shopper import History, Shopper, active_users, load_history
from .tokens import ClickData, make_click_token

logger = logging.getLogger(__name__)

# Reciprocal-rank-fusion constant for blending co-purchases with the model's similar items.
RRF_K = 10


class ProductNotFound(LookupError):
    """The product a list is about does not exist."""


@dataclass
class _Computed:
    """The cacheable part of a list."""

    candidates: list[Candidate]
    source: str
    model_version: str = ""


def clamp_limit(limit: Any) -> int:
    """DEFAULT_LIMIT when None; at most MAX_LIMIT; ValueError unless a whole number >= 1."""
    if limit is None:
        return recs_settings.DEFAULT_LIMIT
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a whole number of at least 1, not {limit!r}")
    return min(limit, recs_settings.MAX_LIMIT)


def for_you(
    shopper: Shopper, limit: int | None = None, *, category: str | None = None,
    exclude: Iterable[str] = (),
) -> RecommendationList:
    """The shopper's own list, from their live history (popular products for a newcomer)."""
    placement = Placement.FOR_YOU
    limit = clamp_limit(limit)
    exclude = frozenset(exclude)
    history = load_history(shopper)
    snapshot = catalog.get()
    model = with_new_products(active_model())
    purchased = history.purchased if hides_purchases(placement) else frozenset()
    pool = _pool(limit, exclude)
    seen = frozenset(history.product_ids)

    def compute() -> _Computed:
        if not history:
            return _Computed(fallbacks.trending(snapshot, pool)
                             + fallbacks.popular_in(snapshot, category, pool), "popular")
        recent = history.recent_products()
        if model is not None and _model_reads(model, history):
            try:
                found = _from_histories(model, [history], pool,
                                        _allowed(snapshot, model, category),
                                        hide_purchases=hides_purchases(placement))[0]
            except Exception:
                logger.exception("shop_recs: model %s failed on a for-you list; using the "
                                 "fallback", model.label)
            else:
                return _Computed(found + fallbacks.trending(snapshot, limit), "model", model.label)
        _log_fallback(placement, model)
        categories = categories_of(recent, snapshot).values()
        return _Computed(fallbacks.for_categories(snapshot, categories, pool), "popular")

    # A personal list is made for each request (a key of the shopper's events would change with
    # each of them, so a list cached on the way rarely served twice), unless the job computed it
    # ahead for exactly this history (precomputed.py). Keyed by the trained version alone: a
    # product placed since would otherwise make every list computed ahead unreadable.
    ahead = None
    if model is not None and category is None:
        ahead = precomputed.read(shopper, history, model.label, pool)
    if ahead is not None:
        computed = _Computed(ahead + fallbacks.trending(snapshot, limit), "model", model.label)
    else:
        computed = compute() if history else cached(
            _key(placement, "anyone", _version(model), category, pool), compute
        )
    rules = Rules(placement, shopper, exclude=exclude | seen, purchased=purchased,
                  category=category, max_per_category=recs_settings.MAX_PER_CATEGORY)
    return _assemble(placement, computed, apply_rules(computed.candidates, snapshot, rules), limit,
                     snapshot)


def precompute_for_you(batch_size: int = 256) -> int:
    """Compute the for-you candidates of the signed-in shoppers active in the last
    PRECOMPUTE_ACTIVE_DAYS days ahead, for the active model (newly activated: this process
    loads it first), and store them for their next request (precomputed.py). One Transformer
    pass per `batch_size` shoppers; the candidates are the model's, as a request would make
    them at the default limit. Returns how many shoppers' candidates were stored."""
    days = recs_settings.PRECOMPUTE_ACTIVE_DAYS
    if not days:
        return 0
    model_holder.refresh()
    model = with_new_products(active_model())
    if model is None:
        return 0
    snapshot = catalog.get()
    allowed = _allowed(snapshot, model, None)
    pool = _pool(recs_settings.DEFAULT_LIMIT, frozenset())
    users = active_users(timezone.now() - dt.timedelta(days=days))
    status = precomputed.JobStatus(model.label, days, len(users), 0, 0, timezone.now())
    precomputed.report(status)
    stored = 0
    for start in range(0, len(users), batch_size):
        shoppers = [Shopper(user_id=user) for user in users[start : start + batch_size]]
        read = [(shopper, load_history(shopper)) for shopper in shoppers]
        usable = [(shopper, history) for shopper, history in read
                  if _model_reads(model, history)]
        if usable:
            lists = _from_histories(model, [history for _, history in usable], pool, allowed,
                                    hide_purchases=hides_purchases(Placement.FOR_YOU))
            precomputed.store([(shopper, history, found) for (shopper, history), found
                               in zip(usable, lists, strict=True)], model.label, pool)
            stored += len(usable)
        done = min(start + batch_size, len(users))
        if done == len(users) or start // batch_size % 20 == 0:
            logger.info("shop_recs: for-you lists computed ahead: %d of %d shoppers done",
                        done, len(users))
            precomputed.report(replace(status, done=done, stored=stored))
    precomputed.report(replace(status, done=len(users), stored=stored, finished=timezone.now()))
    return stored


def similar(
    product: Model | Any, shopper: Shopper, limit: int | None = None, *,
    category: str | None = None, exclude: Iterable[str] = (),
) -> RecommendationList:
    """Products like this one (for a product page); ProductNotFound if it does not exist."""
    placement = Placement.SIMILAR
    limit = clamp_limit(limit)
    snapshot = catalog.get()
    anchor = _anchor_id(product, snapshot)
    exclude = frozenset(exclude) | {anchor}
    trained = active_model()
    model = with_new_products(trained)
    pool = _pool(limit, exclude)

    def compute() -> _Computed:
        if model is not None:
            try:
                scored = model.recommender.similar_items(
                    anchor, k=pool, allowed=_allowed(snapshot, model, category),
                )
            except KeyError:
                found = _text_similar(model, anchor, snapshot, pool, category)
                if found:
                    return _Computed(found, "text", model.label)
            except Exception:
                logger.exception("shop_recs: model %s failed on similar(%s); using the fallback",
                                 model.label, anchor)
            else:
                reason = Reason("similar_to", product_id=anchor)
                # A product placed since training gets its list from its text (similar_items).
                source = "model" if anchor in known_items(trained) else "text"
                return _Computed([Candidate(s.item, s.score, reason) for s in scored], source,
                                 model.label)
        _log_fallback(placement, model)
        return _Computed(_popular_near(anchor, snapshot, pool), "popular")

    # The model keeps each product's nearest neighbours in this process: its answer is cheaper
    # than a miss in the shared cache (a read and a write), so only fallbacks are shared.
    if model is not None and anchor in known_items(model):
        computed = compute()
    else:
        computed = cached(_key(placement, anchor, _version(model), category, pool), compute)
    return _personalised(placement, computed, shopper, snapshot, limit, exclude, category,
                         known=_given(product, anchor))


def bought_together(
    product: Model | Any, shopper: Shopper, limit: int | None = None, *,
    category: str | None = None, exclude: Iterable[str] = (),
) -> RecommendationList:
    """What shoppers buy with this product: co-purchases blended with the model's neighbours."""
    placement = Placement.BOUGHT_TOGETHER
    limit = clamp_limit(limit)
    snapshot = catalog.get()
    anchor = _anchor_id(product, snapshot)
    exclude = frozenset(exclude) | {anchor}
    model = with_new_products(active_model())
    pool = _pool(limit, exclude)

    def compute() -> _Computed:
        together = [pid for pid, _ in co_purchase_counts(anchor) if pid in snapshot.available]
        neighbours: list[str] = []
        if model is not None:
            try:
                neighbours = [s.item for s in model.recommender.similar_items(
                    anchor, k=pool, allowed=_allowed(snapshot, model, category),
                )]
            except KeyError:
                pass  # a product the model has not seen: co-purchases alone
            except Exception:
                logger.exception("shop_recs: model %s failed on bought_together(%s)",
                                 model.label, anchor)
        if not together and not neighbours:
            _log_fallback(placement, model)
            return _Computed(_popular_near(anchor, snapshot, pool), "popular")
        blended = _fuse(together[:pool], neighbours)
        bought = set(together)
        found = [
            Candidate(pid, score, Reason("bought_with" if pid in bought else "goes_with",
                                         product_id=anchor))
            for pid, score in blended
        ]
        source = "+".join(name for name, used in (("co-purchase", together),
                                                   ("model", neighbours)) if used)
        return _Computed(found, source, model.label if neighbours and model else "")

    computed = cached(_key(placement, anchor, _version(model), category, pool), compute)
    return _personalised(placement, computed, shopper, snapshot, limit, exclude, category,
                         known=_given(product, anchor))


def recently_viewed(
    shopper: Shopper, limit: int | None = None, *, category: str | None = None,
    exclude: Iterable[str] = (),
) -> RecommendationList:
    """The products the shopper looked at last, newest first (still available ones)."""
    placement = Placement.RECENTLY_VIEWED
    limit = clamp_limit(limit)
    history = load_history(shopper)
    snapshot = catalog.get()
    viewed = history.recent_products("view")
    candidates = [
        Candidate(pid, 1.0 / rank, Reason("recently_viewed"))
        for rank, pid in enumerate(viewed, start=1)
    ]
    purchased = history.purchased if hides_purchases(placement) else frozenset()
    rules = Rules(placement, shopper, exclude=frozenset(exclude), purchased=purchased,
                  category=category, rerank=False)
    return _assemble(placement, _Computed([], "history"), apply_rules(candidates, snapshot, rules),
                     limit, snapshot)


# --- The model ---------------------------------------------------------------------------------


def active_model() -> LoadedModel | None:
    """The model to serve with; None (and logged) when there is none or it cannot be loaded."""
    try:
        return model_holder.get()
    except Exception:
        logger.exception("shop_recs: the active model could not be loaded; using fallbacks")
        return None


@lru_cache(maxsize=2)  # the active model, and it with new products placed (new_products)
def known_items(model: LoadedModel) -> frozenset[str]:
    return frozenset(model.recommender.item_ids)


def _text_similar(
    model: LoadedModel, anchor: str, snapshot: CatalogSnapshot, k: int, category: str | None
) -> list[Candidate]:
    """Similar products by text for a product the model has not seen ([] if that fails too)."""
    try:
        found = fallbacks.text_similar(model.recommender, anchor, k,
                                       _allowed(snapshot, model, category))
    except Exception:
        logger.exception("shop_recs: no text similarity for the new product %s", anchor)
        return []
    logger.info("shop_recs: product %s is new to model %s; similar products by text", anchor,
                model.label)
    return found


def _model_reads(model: LoadedModel, history: History) -> bool:
    """Whether the model knows any product of the history (else its list would be popularity)."""
    return bool(history) and not known_items(model).isdisjoint(history.product_ids)


def _from_histories(
    model: LoadedModel, histories: list[History], pool: int, allowed: np.ndarray, *,
    hide_purchases: bool,
) -> list[list[Candidate]]:
    """The model's `pool` best candidates for each history, each with the history product
    behind it: one Transformer pass for all of them (a request passes one)."""
    scored = model.recommender.recommend_batch(
        [list(h.product_ids) for h in histories], k=pool,
        kinds=[list(h.kinds) for h in histories],
        excludes=[frozenset(h.product_ids) | (h.purchased if hide_purchases else frozenset())
                  for h in histories],
        allowed=allowed,
    )
    lists = []
    for history, found in zip(histories, scored, strict=True):
        kinds = history.latest_kind()
        lists.append([Candidate(s.item, s.score, Reason("history", product_id=s.reason_item or "",
                                                        kind=kinds.get(s.reason_item or "", "")))
                      for s in found])
    return lists


def _version(model: LoadedModel | None) -> str:
    if model is None:
        return "none"
    return f"{model.label}+{model.placement}" if model.placement else model.label


def _allowed(snapshot: CatalogSnapshot, model: LoadedModel, category: str | None) -> np.ndarray:
    """The model's items that may be shown (available; in `category` when one is asked for),
    as its item mask: made once per catalogue snapshot, model and category, since resolving
    50,000 ids costs more than the rest of the ranking. An unknown category allows nothing."""
    members = snapshot.available if category is None else snapshot.members.get(category)
    if members is None:
        return model.recommender.item_mask(())  # not kept: any string can be asked for
    # Keyed by the model itself: one version serves with and without new products placed.
    return snapshot.derived(("allowed", model, category),
                            lambda: model.recommender.item_mask(members))


def _log_fallback(placement: str, model: LoadedModel | None) -> None:
    why = "no active model" if model is None else f"model {model.label} could not answer"
    logger.info("shop_recs: %s list from the popularity fallback (%s)", placement, why)


# --- Helpers -----------------------------------------------------------------------------------


def _pool(limit: int, exclude: frozenset[str]) -> int:
    """How many candidates to ask for: enough that the rules can drop some and still fill."""
    factor = 2 if recs_settings.MAX_PER_CATEGORY is None else 4
    return max(limit * factor, 20) + len(exclude)


def _key(placement: str, *parts: Any) -> str:
    raw = "|".join(str(p) for p in parts)
    return f"shop_recs:{placement}:" + hashlib.sha1(raw.encode(), usedforsecurity=False).hexdigest()


def _anchor_id(product: Model | Any, snapshot: CatalogSnapshot) -> str:
    adapter = get_adapter()
    try:
        product_id = adapter.to_product_id(product)
    except ValueError as exc:
        raise ProductNotFound(str(exc)) from None
    if isinstance(product, Model) or product_id in snapshot.available:
        return product_id
    if not adapter.existing_product_ids([product_id]):
        raise ProductNotFound(f"There is no product {product_id!r}.")
    return product_id


def _popular_near(anchor: str, snapshot: CatalogSnapshot, k: int) -> list[Candidate]:
    category = categories_of([anchor], snapshot).get(anchor)
    return fallbacks.for_categories(snapshot, [category], k)


def _fuse(*rankings: list[str]) -> list[tuple[str, float]]:
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, pid in enumerate(ranking, start=1):
            scores[pid] = scores.get(pid, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def _personalised(
    placement: str, computed: _Computed, shopper: Shopper, snapshot: CatalogSnapshot,
    limit: int, exclude: frozenset[str], category: str | None, *, known: dict[str, Model],
) -> RecommendationList:
    """A product list (shared by every shopper) with this shopper's rules applied."""
    purchased: frozenset[str] = frozenset()
    if hides_purchases(placement) and shopper.is_known:
        purchased = load_history(shopper).purchased
    rules = Rules(placement, shopper, exclude=exclude, purchased=purchased, category=category,
                  max_per_category=recs_settings.MAX_PER_CATEGORY)
    return _assemble(placement, computed, apply_rules(computed.candidates, snapshot, rules), limit,
                     snapshot, known=known)


def _given(product: Model | Any, product_id: str) -> dict[str, Model]:
    """The caller's own product instance (a page's product): no need to fetch it again."""
    return {product_id: product} if isinstance(product, Model) else {}


def _assemble(
    placement: str, computed: _Computed, ranked: list[Candidate], limit: int,
    snapshot: CatalogSnapshot, *, known: dict[str, Model] | None = None,
) -> RecommendationList:
    known = known or {}
    adapter = get_adapter()
    impression_id = uuid.uuid4().hex[:16]
    link = click_links()
    items: list[RecommendedItem] = []
    # A few spares for products that sold out since the snapshot; the next slice only if the
    # spares were not enough (rare: one query per list as a rule).
    size = limit + max(2, limit // 4)
    for start in range(0, len(ranked), size):
        head = ranked[start : start + size]
        reason_ids = [c.reason.product_id for c in head
                      if c.reason.product_id and c.reason.product_id not in known]
        products, available = fetch_products([c.product_id for c in head], reason_ids)
        known = {**known, **products}
        for candidate in head:
            if candidate.product_id not in available:
                continue
            product = known[candidate.product_id]
            position = len(items) + 1
            token = make_click_token(ClickData(candidate.product_id, placement,
                                               computed.model_version, impression_id, position))
            product_url = adapter.product_url(product)
            items.append(RecommendedItem(
                product=product, product_id=candidate.product_id, score=candidate.score,
                reason=reason_text(candidate.reason, known,
                                   snapshot.category_name(candidate.reason.category or None)),
                placement=placement, model_version=computed.model_version, position=position,
                click_token=token, product_url=product_url, click_url=link(token, product_url),
            ))
            if len(items) == limit:
                break
        if len(items) == limit:
            break
    return RecommendationList(placement=placement, items=items,
                              model_version=computed.model_version, source=computed.source,
                              impression_id=impression_id)
