from django.apps import AppConfig


class ShopRecsConfig(AppConfig):
    name = "shop_recs"
    label = "shop_recs"
    verbose_name = "Shop recommendations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # System checks and signal receivers are connected here, once, as Django advises.
        from . import checks, receivers  # noqa: F401
