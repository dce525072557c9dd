from django.urls import path, register_converter

from scheduler import views
from scheduler.tokens import TOKEN_PATTERN


class TokenConverter:
    regex = TOKEN_PATTERN

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(TokenConverter, "token")

urlpatterns = [
    path("calendars/<token:token>.ics", views.calendar_feed, name="calendar_feed"),
]
