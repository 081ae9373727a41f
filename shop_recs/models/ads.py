"""Ad campaigns, their daily spend, and the click ledger.

Money is counted in cents (integers) wherever it is added up, so that sums are exact on every
database (SQLite stores decimals as floating point). A campaign pays its bid per click (CPC);
impressions are free. A day's spend only ever grows by a conditional UPDATE that checks the
budget in the same statement (see ``shop_recs.services.ads.charge_click``), so concurrent clicks
can never take it over the daily budget.
"""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, URLValidator
from django.db import models
from django.db.models import Q

MAX_URL_LENGTH = 2000


def validate_target_url(url: str) -> None:
    """An ad may lead only to an http(s) URL or a path on this site.

    Refused: other schemes (``javascript:``, ``data:``), scheme-relative ``//host`` URLs,
    backslashes and control characters (browsers read ``/\\host`` and ``http:\\\\host`` as
    another host), user names in the host (``https://shop.example@evil.example``), and, when
    SHOP_RECS["ADS_ALLOWED_TARGET_HOSTS"] is set, hosts not in it.
    """
    from ..conf import recs_settings

    if not isinstance(url, str) or not url:
        raise ValidationError("Enter the address the ad leads to.")
    if len(url) > MAX_URL_LENGTH:
        raise ValidationError(f"The address is longer than {MAX_URL_LENGTH} characters.")
    if "\\" in url or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise ValidationError("The address may not contain backslashes, spaces or control "
                              "characters.")
    if url.startswith("/") and not url.startswith("//"):
        return  # a page of this site
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValidationError("The address must start with http:// or https:// (or be a path "
                              "on this site starting with a single /).")
    if "@" in parts.netloc:
        raise ValidationError("The address may not contain a user name or password.")
    URLValidator(schemes=["http", "https"])(url)
    allowed = recs_settings.ADS_ALLOWED_TARGET_HOSTS
    if allowed is not None and parts.hostname.lower() not in {h.lower() for h in allowed}:
        raise ValidationError(f"Ads may only lead to {', '.join(allowed)} "
                              '(SHOP_RECS["ADS_ALLOWED_TARGET_HOSTS"]).')


def cents(amount: Decimal) -> int:
    """An amount with at most two decimals as whole cents."""
    return int((amount * 100).to_integral_value())


class AdCampaign(models.Model):
    class Kind(models.TextChoices):
        PRODUCT = "product", "Sponsored product"
        CREATIVE = "creative", "Creative (own title, text and image)"

    name = models.CharField(max_length=200, help_text="For the admin only.")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.PRODUCT)
    product_id = models.CharField(
        max_length=64, blank=True,
        help_text="The sponsored product's id (sponsored products only).",
    )
    title = models.CharField(max_length=200, blank=True,
                             help_text="Shown as the ad's heading (default: the product's name).")
    text = models.TextField(max_length=500, blank=True)
    image_url = models.URLField(max_length=MAX_URL_LENGTH, blank=True,
                                validators=[URLValidator(schemes=["http", "https"])])
    target_url = models.CharField(
        max_length=MAX_URL_LENGTH, blank=True, validators=[validate_target_url],
        help_text="Where a click leads: http(s) or a path on this site. Sponsored products: "
                  "leave empty for the product's own page.",
    )
    bid = models.DecimalField(max_digits=10, decimal_places=2,
                              validators=[MinValueValidator(Decimal("0.01"))],
                              help_text="Cost per click.")
    daily_budget = models.DecimalField(max_digits=12, decimal_places=2,
                                       validators=[MinValueValidator(Decimal("0.01"))])
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    frequency_cap = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most times one shopper sees it per day (empty: no cap).",
    )
    target_categories = models.JSONField(
        default=list, blank=True,
        help_text='Category ids, e.g. ["3", "7"]: shown on those categories\' pages and to '
                  "shoppers who browse them. Empty: everyone.",
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(bid__gt=0) & Q(daily_budget__gte=models.F("bid")),
                                   name="shop_recs_ad_bid_within_budget"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def bid_cents(self) -> int:
        return cents(self.bid)

    @property
    def budget_cents(self) -> int:
        return cents(self.daily_budget)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.kind == self.Kind.PRODUCT:
            from ..adapter import get_adapter

            if not self.product_id:
                errors["product_id"] = "A sponsored product ad needs the product's id."
            elif get_adapter().get_product(self.product_id) is None:
                errors["product_id"] = f"There is no product {self.product_id!r}."
        else:
            if not self.title:
                errors["title"] = "A creative needs a title."
            if not self.target_url:
                errors["target_url"] = "A creative needs the address it leads to."
        if self.bid is not None and self.daily_budget is not None and self.bid > self.daily_budget:
            errors["bid"] = "The bid (cost per click) cannot be more than the daily budget."
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            errors["ends_at"] = "The campaign must end after it starts."
        categories = self.target_categories
        if not isinstance(categories, list) or not all(
            isinstance(c, str | int) and not isinstance(c, bool) for c in categories
        ):
            errors["target_categories"] = 'A list of category ids, e.g. ["3", "7"].'
        else:
            self.target_categories = [str(c) for c in categories]
        if errors:
            raise ValidationError(errors)


class AdDailyStats(models.Model):
    """One campaign's day: spend (cents), impressions, charged and unbilled clicks."""

    campaign = models.ForeignKey(AdCampaign, on_delete=models.CASCADE,
                                 related_name="daily_stats")
    day = models.DateField()
    spend_cents = models.BigIntegerField(default=0)
    impressions = models.PositiveIntegerField(default=0)
    clicks = models.PositiveIntegerField(default=0)
    # Clicks that came after the budget was spent: the shopper still got there, nobody paid.
    unbilled_clicks = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name_plural = "ad daily stats"
        constraints = [
            models.UniqueConstraint(fields=["campaign", "day"], name="shop_recs_ad_stats_day"),
            models.CheckConstraint(condition=Q(spend_cents__gte=0),
                                   name="shop_recs_ad_spend_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign} on {self.day}"


class AdClick(models.Model):
    """The click ledger: one row per click (its key makes a double click count once)."""

    campaign = models.ForeignKey(AdCampaign, on_delete=models.CASCADE, related_name="clicks")
    key = models.CharField(max_length=64, unique=True)
    day = models.DateField()
    cost_cents = models.PositiveIntegerField(default=0)  # 0: unbilled (over budget)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"click on {self.campaign} ({self.cost_cents} cents)"
