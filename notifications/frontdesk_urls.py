from django.urls import path

from notifications import frontdesk

# Included under /desk/ (config/urls.py).
urlpatterns = [
    path("", frontdesk.today, name="desk_today"),
    path("day/<str:day>/", frontdesk.day, name="desk_day"),
    path("week/", frontdesk.week, name="desk_this_week"),
    path("week/<str:day>/", frontdesk.week, name="desk_week"),
    path("patients/", frontdesk.patients, name="desk_patients"),
    path("patients/<int:pk>/", frontdesk.patient, name="desk_patient"),
    path("visits/<int:pk>/", frontdesk.visit_page, name="desk_visit"),
    path("messages/", frontdesk.message_queue, name="desk_messages"),
    path("messages/<int:pk>/resend", frontdesk.resend, name="desk_resend"),
    path("inbox/<int:pk>/handled", frontdesk.mark_handled, name="desk_handled"),
    path("plans/new/", frontdesk.new_plan, name="desk_new_plan"),
]
