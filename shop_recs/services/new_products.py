"""Products added since the active model was trained, placed in it by their text.

A model knows the products of the catalogue it was trained on; one added since would enter no
for-you list until the next training. Each web process therefore keeps the active model extended
by the available products it does not know (``Recommender.with_items``: each placed by the
model's text projection, as a product with no interactions yet), made again in a background
thread when a catalogue refresh finds other such products or another model is activated
(``Refreshed``), and the lists are ranked with it: for-you lists (``NEW_PRODUCT_BOOST`` gives
the new products more room there), the similar and bought-together lists of product pages,
where a new product counts a measured share of its similarity (``Recommender.with_items``) and
its own page lists products like its text, and search results for a shopper. Ads keep the
trained model. Their texts come from the shared embedding cache, which the catalogue job fills
ahead of need. ``python -m benchmarks.new_products`` measures what this is worth.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace

import numpy as np

from ..adapter import get_adapter
from ..conf import recs_settings
from ..serving import LoadedModel, model_holder
from .catalog import CatalogSnapshot, catalog
from .refreshed import Refreshed

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlacedModel:
    trained: LoadedModel | None
    snapshot: CatalogSnapshot
    model: LoadedModel | None  # `trained` with the new products placed (or `trained` itself)
    unknown: frozenset[str]  # the available products `trained` does not know
    boost: float = 1.0  # NEW_PRODUCT_BOOST they were placed with
    failed: bool = False  # placing them failed: tried again after the next catalogue refresh


def with_new_products(trained: LoadedModel | None) -> LoadedModel | None:
    """`trained` (the active model) with the products added since its training placed in it;
    `trained` itself until those are placed, when there are none, or when placing fails."""
    if trained is None or not recs_settings.PLACE_NEW_PRODUCTS:
        return trained
    try:
        placed = placed_model.get()
    except Exception:
        logger.exception("shop_recs: new products could not be placed in model %s",
                         trained.label)
        return trained
    return placed.model if placed.trained is trained else trained


def place_new_products() -> PlacedModel:
    """The active model with the available products it does not know placed by their text
    (the last placement reused while they are the same products)."""
    trained, snapshot = model_holder.get(), catalog.get()
    if trained is None or not trained.recommender.has_text:
        return PlacedModel(trained, snapshot, trained, frozenset())
    unknown = frozenset(snapshot.available.difference(trained.recommender.item_ids))
    boost = float(recs_settings.NEW_PRODUCT_BOOST)
    previous = placed_model.current
    if (previous is not None and previous.trained is trained and previous.unknown == unknown
            and previous.boost == boost and not previous.failed):
        return replace(previous, snapshot=snapshot)
    try:
        return PlacedModel(trained, snapshot, _placed(trained, unknown, boost), unknown, boost)
    except Exception:
        logger.exception("shop_recs: products added since model %s was trained could not be "
                         "placed; lists leave them out until the next catalogue refresh",
                         trained.label)
        return PlacedModel(trained, snapshot, trained, unknown, boost, failed=True)


def _placed(trained: LoadedModel, unknown: frozenset[str], boost: float) -> LoadedModel:
    from ..registry import text_encoder

    if not unknown:
        return trained
    encoder = text_encoder()
    recommender = trained.recommender
    if recommender.text_model_id and encoder.model_id != recommender.text_model_id:
        logger.warning("shop_recs: the text encoder %s differs from model %s's (%s): products "
                       "added since its training are not placed", encoder.model_id,
                       trained.label, recommender.text_model_id)
        return trained
    texts = get_adapter().texts_for_ids(sorted(unknown))
    product_ids = [pid for pid, text in texts.items() if text]  # no text: nothing to place by
    if not product_ids:
        return trained
    vectors = np.asarray(encoder.encode([texts[pid] for pid in product_ids]))
    logger.info("shop_recs: %d products added since model %s was trained placed by their text",
                len(product_ids), trained.label)
    placement = hashlib.sha256(repr((boost, sorted(product_ids))).encode()).hexdigest()[:12]
    return replace(trained, recommender=recommender.with_items(product_ids, vectors, boost=boost),
                   placement=placement)


def _outdated(placed: PlacedModel) -> bool:
    return placed.trained is not model_holder.get() or placed.snapshot is not catalog.get()


# Built on first use (that request waits), then again in a background thread when the active
# model or the catalogue snapshot changes; meanwhile for-you lists use the last placement made
# for the active model, or that model as trained.
placed_model: Refreshed[PlacedModel] = Refreshed(
    place_new_products, lambda: recs_settings.CATALOG_REFRESH_SECONDS, "new products' placement",
    outdated=_outdated,
)
