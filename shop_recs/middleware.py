"""Remember a guest's session key before login replaces it.

Django's ``login()`` gives the session a new key (against session fixation) before it sends
``user_logged_in``, so the receiver that attaches a guest's events to the account can no
longer see the key those events were recorded under. This middleware notes the key as the
request arrives; ``shop_recs.receivers`` reads it. Place it after SessionMiddleware.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

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
