"""Co-purchase counts: how many shoppers bought two products together, as of the last count.

Written only by ``services.copurchase.count_co_purchases`` (scheduled by purchases, after each
training run and order import, by ``manage.py recs_co_purchases``), read by the bought-together
list: one indexed query per product page instead of counting there.
"""

from __future__ import annotations

from django.db import models


class CoPurchase(models.Model):
    """``shoppers`` bought ``other_id`` with ``product_id`` (each pair is stored both ways)."""

    product_id = models.CharField(max_length=64)
    other_id = models.CharField(max_length=64)
    shoppers = models.PositiveIntegerField()
    counted_at = models.DateTimeField()  # when this count was written (it changed then)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["product_id", "other_id"],
                                    name="shop_recs_copurchase_pair"),
        ]
        indexes = [
            models.Index(fields=["product_id", "-shoppers"], name="shop_recs_copurchase_top"),
        ]

    def __str__(self) -> str:
        return f"{self.other_id} bought with {self.product_id} by {self.shoppers} shoppers"
