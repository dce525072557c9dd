from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from config import views

admin.site.site_header = "KAP scheduler"
admin.site.site_title = "KAP scheduler"
admin.site.index_title = "Clinic administration"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("login/", views.login, name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("webhooks/twilio/", include("notifications.urls")),
    path("desk/", include("notifications.frontdesk_urls")),
    path("p/", include("notifications.patient_urls")),
    path("", include("scheduler.urls")),
    path("", views.home, name="home"),
]
