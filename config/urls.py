from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.decorators.cache import cache_control
from django.views.generic.base import RedirectView

admin.site.site_header = "KAP scheduler"
admin.site.site_title = "KAP scheduler"
admin.site.index_title = "Clinic administration"

urlpatterns = [
    path("admin/", admin.site.urls),
    # Browsers ask for /favicon.ico whatever the page says; answer with ours, not a 404.
    # The one answer any cache may keep (config.middleware.NeverCacheMiddleware).
    path(
        "favicon.ico",
        cache_control(public=True, max_age=24 * 3600)(
            RedirectView.as_view(url=static("favicon.svg"), permanent=True)
        ),
        name="favicon",
    ),
    path("webhooks/twilio/", include("notifications.urls")),
    path("fhir/", include("fhirapi.urls")),
    path("", include("scheduler.urls")),
    path("", include("desk.urls")),
]
