from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "KAP scheduler"
admin.site.site_title = "KAP scheduler"
admin.site.index_title = "Clinic administration"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("webhooks/twilio/", include("notifications.urls")),
    path("", include("scheduler.urls")),
    path("", include("desk.urls")),
]
