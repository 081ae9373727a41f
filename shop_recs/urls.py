"""The plugin's URLs. A shop includes them once, e.g. in its urls.py::

    path("recs/", include("shop_recs.urls")),

which gives the click endpoint (``recs/click/<token>/``, used by the template tags' links) and
the REST API under ``recs/api/`` (OpenAPI schema at ``recs/api/schema/``).
"""

from django.urls import include, path

from . import views

app_name = "shop_recs"

urlpatterns = [
    path("click/<str:token>/", views.click, name="click"),
    path("api/", include("shop_recs.api.urls")),
]
