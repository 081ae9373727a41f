from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The example shop: its own catalogue and orders; the plugin reaches them through settings."""

    name = "demo"
    label = "demo"
    default_auto_field = "django.db.models.BigAutoField"
