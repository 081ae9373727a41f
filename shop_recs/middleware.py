"""The plugin's middleware: remember a guest's session key before login replaces it, and keep
responses that show a shopper's own lists out of shared caches.

Django's ``login()`` gives the session a new key (against session fixation) before it sends
``user_logged_in``, so the receiver that attaches a guest's events to the account can no
longer see the key those events were recorded under. This middleware notes the key as the
request arrives; ``shop_recs.receivers`` reads it. Place it after SessionMiddleware.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_cache_control, patch_vary_headers

# The request attribute holding the session key the request arrived with (None: no session).
GUEST_KEY_ATTRIBUTE = "shop_recs_guest_session_key"


class GuestSessionMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = getattr(request, "session", None)
        # session_key is read from the cookie: no database access here.
        setattr(request, GUEST_KEY_ATTRIBUTE, session.session_key if session else None)
        return self.get_response(request)


# The request attribute that says the response was chosen for the shopper who asked.
PERSONAL_ATTRIBUTE = "shop_recs_personal"


def mark_personal(request: object) -> None:
    """Note that the response to ``request`` depends on who sent it (a DRF Request's
    underlying HttpRequest is marked, so middleware sees it)."""
    if request is not None:
        setattr(getattr(request, "_request", request), PERSONAL_ATTRIBUTE, True)


class PrivateResponseMiddleware:
    """``Cache-Control: private`` and ``Vary: Cookie`` on every response that shows a shopper's
    own lists (a recommendation tag on a page, a personal API answer), so that no shared cache
    (a CDN, a proxy) can hand one shopper's page to another. Place it after SessionMiddleware.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if getattr(request, PERSONAL_ATTRIBUTE, False):
            patch_cache_control(response, private=True)
            patch_vary_headers(response, ("Cookie",))
        return response
