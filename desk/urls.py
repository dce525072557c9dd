"""Every page people open: sign-in, the front desk, a clinician's calendar, the patient page."""

from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.i18n import JavaScriptCatalog
from django_otp_webauthn import views as passkey_views

from desk import (
    alert_pages,
    billing_pages,
    calendar_page,
    clinics,
    frontdesk,
    patient_page,
    patient_records,
    questionnaire_pages,
    rems,
    score_pages,
    second_factor,
    signin,
    single_booking,
    waitlist_pages,
)

frontdesk_urls = [
    path("", frontdesk.today, name="desk_today"),
    path("day/<str:day>/", frontdesk.day, name="desk_day"),
    path("week/", frontdesk.week, name="desk_this_week"),
    path("week/<str:day>/", frontdesk.week, name="desk_week"),
    path("patients/", frontdesk.patients, name="desk_patients"),
    path("patients/<int:pk>/", frontdesk.patient, name="desk_patient"),
    path("patients/new/", patient_records.new_patient, name="desk_new_patient"),
    path("patients/<int:pk>/edit/", patient_records.edit_patient, name="desk_edit_patient"),
    path("patients/<int:pk>/book/", single_booking.book_visit, name="desk_book_visit"),
    path("patients/<int:pk>/costs/", billing_pages.costs, name="desk_costs"),
    path("patients/<int:pk>/superbill/", billing_pages.superbill_page, name="desk_superbill"),
    path("plans/<int:pk>/estimate/", billing_pages.printable_estimate, name="desk_estimate"),
    path("visits/<int:pk>/", frontdesk.visit_page, name="desk_visit"),
    path("visits/<int:pk>/session/", rems.session_record, name="desk_session_record"),
    path("visits/<int:pk>/rems-form/", rems.monitoring_form, name="desk_monitoring_form"),
    path("rems-forms/<int:pk>/submitted", rems.form_submitted, name="desk_form_submitted"),
    path("messages/", frontdesk.message_queue, name="desk_messages"),
    path("waitlist/", waitlist_pages.desk_waitlist, name="desk_waitlist"),
    path("messages/<int:pk>/resend", frontdesk.resend, name="desk_resend"),
    path("inbox/<int:pk>/handled", frontdesk.mark_handled, name="desk_handled"),
    path("plans/new/", frontdesk.new_plan, name="desk_new_plan"),
    path("alerts/<int:pk>/", alert_pages.alert_page, name="desk_alert"),
    path("scores/", score_pages.scores, name="desk_scores"),
    path("clinic/choose", clinics.choose, name="choose_clinic"),
]

# One name for the patient page: reversed without a token it is the entrance
# that tells a patient how to get a link, with one it is their page. The
# token's shape is checked by scheduler.tokens.verify, which answers None
# (here: 404) for anything else.
patient_urls = [
    path("", patient_page.entrance, name="patient_page"),
    path("<str:token>/", patient_page.patient_page, name="patient_page"),
    path("<str:token>/visits/<int:pk>.ics", patient_page.visit_ics, name="patient_visit_ics"),
    path("<str:token>/visits/<int:pk>/move/", patient_page.move_visit, name="patient_move"),
    path("<str:token>/visits/<int:pk>/cancel/", patient_page.cancel_visit, name="patient_cancel"),
    path("<str:token>/waitlist/", waitlist_pages.patient_join, name="patient_waitlist"),
    path("<str:token>/costs/", billing_pages.patient_costs, name="patient_costs"),
    path("<str:token>/questions/", questionnaire_pages.questions, name="patient_questions"),
    path("<str:token>/questions/<int:pk>/", questionnaire_pages.question, name="patient_question"),
    path(
        "<str:token>/questions/<int:pk>/review/",
        questionnaire_pages.review,
        name="patient_question_review",
    ),
    path(
        "<str:token>/questions/<int:pk>/done/",
        questionnaire_pages.done,
        name="patient_question_done",
    ),
]

# django-otp-webauthn's API under its own names (its scripts reverse them), with
# the two views that finish a ceremony in the audit trail and the lockout.
passkey_urls = (
    [
        path(
            "registration/begin/",
            second_factor.PasskeyAddBegins.as_view(),
            name="credential-registration-begin",
        ),
        path(
            "registration/complete/",
            second_factor.PasskeyAdded.as_view(),
            name="credential-registration-complete",
        ),
        path(
            "authentication/begin/",
            passkey_views.BeginCredentialAuthenticationView.as_view(),
            name="credential-authentication-begin",
        ),
        path(
            "authentication/complete/",
            second_factor.PasskeyChecked.as_view(),
            name="credential-authentication-complete",
        ),
        path(
            "jsi18n/",
            JavaScriptCatalog.as_view(packages=["django_otp_webauthn"]),
            name="js-i18n-catalog",
        ),
    ],
    "otp_webauthn",
)

urlpatterns = [
    path("login/", signin.login, name="login"),
    path("login/code/", second_factor.verify, name="second_factor_verify"),
    path("account/second-factor/", second_factor.setup, name="second_factor_setup"),
    path("account/passkeys/", include(passkey_urls)),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("desk/", include(frontdesk_urls)),
    path("p/", include(patient_urls)),
    path("w/<str:token>/", waitlist_pages.offer_page, name="waitlist_offer"),
    path("calendars/mine/", calendar_page.my_calendar, name="my_calendar"),
    path("calendars/mine/patients/<int:pk>/", score_pages.my_patient, name="my_patient"),
    path("", signin.home, name="home"),
]
