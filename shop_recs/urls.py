"""The plugin's URLs. A shop includes them once, e.g. in its urls.py::

    path("recs/", include("shop_recs.urls")),

which gives the click endpoints (``recs/click/<token>/`` for recommendations and
``recs/ads/click/<token>/`` for ads, used by the template tags' links) and the REST API under
``recs/api/`` (OpenAPI schema at ``recs/api/schema/``).
"""

from django.urls import include, path

from . import views
from .api.ads import ad_click

app_name = "shop_recs"

urlpatterns = [
    path("click/<str:token>/", views.click, name="click"),
    path("ads/click/<str:token>/", ad_click, name="ad_click"),
    path("api/", include("shop_recs.api.urls")),
]
