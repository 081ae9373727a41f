"""A shop that has not routed the plugin's URLs: its lists link straight to the products."""

from django.urls import include, path

urlpatterns = [path("", include("demo.shop_urls"))]
