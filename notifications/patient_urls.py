from django.urls import path

from notifications import patient_page

# Included under /p/ (config/urls.py). The token's shape is checked by
# scheduler.tokens.verify, which answers None (here: 404) for anything else.
urlpatterns = [
    path("<str:token>/", patient_page.patient_page, name="patient_page"),
    path("<str:token>/visits/<int:pk>.ics", patient_page.visit_ics, name="patient_visit_ics"),
]
