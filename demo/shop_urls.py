"""The shop's pages (the project's urls.py adds admin, login and the plugin's API)."""

from django.urls import path

from . import views

urlpatterns = [
    path("", views.product_list, name="product_list"),
    path("products/<int:pk>/", views.product_detail, name="product_detail"),
    path("products/<int:pk>/buy/", views.buy_now, name="buy_now"),
    path("search/", views.search, name="search"),
    path("cart/", views.cart, name="cart"),
    path("cart/add/<int:pk>/", views.cart_add, name="cart_add"),
    path("cart/remove/<int:pk>/", views.cart_remove, name="cart_remove"),
    path("cart/checkout/", views.checkout, name="checkout"),
    path("orders/", views.order_list, name="order_list"),
]
