"""REST API routes (under ``<prefix>/api/`` once the shop includes ``shop_recs.urls``)."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from . import ads, search, views

app_name = "api"

urlpatterns = [
    path("for-you/", views.ForYouView.as_view(), name="for-you"),
    path("users/<str:user_id>/recommendations/", views.UserRecommendationsView.as_view(),
         name="user-recommendations"),
    path("recently-viewed/", views.RecentlyViewedView.as_view(), name="recently-viewed"),
    path("users/<str:user_id>/recently-viewed/", views.UserRecentlyViewedView.as_view(),
         name="user-recently-viewed"),
    path("products/<str:product_id>/similar/", views.SimilarView.as_view(), name="similar"),
    path("products/<str:product_id>/bought-together/", views.BoughtTogetherView.as_view(),
         name="bought-together"),
    path("events/", views.EventsView.as_view(), name="events"),
    path("feedback/", views.FeedbackView.as_view(), name="feedback"),
    path("search/", search.SearchView.as_view(), name="search"),
    path("search/suggest/", search.SuggestView.as_view(), name="search-suggest"),
    path("ads/", ads.AdsView.as_view(), name="ads"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
]
