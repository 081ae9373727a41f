"""URLs of the demo project: the shop, login/logout, the admin and the plugin."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # The plugin: recommendation click tracking (recs/click/...) and the REST API (recs/api/).
    path("recs/", include("shop_recs.urls")),
    path("", include("demo.shop_urls")),
]
