"""The desk adds and edits a patient and books a single visit, without the admin."""

from datetime import date, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from scheduler import booking
from scheduler.models import AuditAction, AuditEvent, ConsentMethod, Patient, Visit, VisitStatus
from tests.conftest import at
from tests.page_helpers import front_desk, offered_times

pytestmark = pytest.mark.usefixtures("now")
TODAY = date(2030, 1, 2)  # the `now` fixture's day in New York (a Wednesday)


@pytest.fixture
def desk(client, clinic):
    client.force_login(front_desk())
    return client


def _patient_form(**changes) -> dict:
    data = {
        "first_name": "Robin",
        "last_name": "Rowan",
        "date_of_birth": "1979-11-23",
        "mobile": "(212) 555-0147",
        "email": "robin.rowan@example.com",
        "time_zone": "America/Chicago",
        "language": "en",
        "contact_by_sms": "on",
        "contact_by_email": "on",
        "sms_consent_at": "",
        "sms_consent_method": "",
        "sms_express_consent_at": "",
        "sms_express_consent_method": "",
    }
    return {k: v for k, v in (data | changes).items() if v is not None}


def _audited(action) -> list[str]:
    return list(
        AuditEvent.objects.filter(action=action).order_by("pk").values_list("detail", flat=True)
    )


# -- a new patient -----------------------------------------------------------------


def test_the_desk_adds_a_patient_with_a_normalised_mobile_and_consent_given_today(desk, clinic):
    patients = desk.get(reverse("desk_patients")).text
    assert reverse("desk_new_patient") in patients
    form = _patient_form(sms_consent_at=TODAY.isoformat(), sms_consent_method="verbal")
    response = desk.post(reverse("desk_new_patient"), form)
    robin = Patient.objects.get(last_name="Rowan")
    assert response["Location"] == reverse("desk_patient", args=[robin.pk])
    assert robin.clinic == clinic.clinic
    assert robin.mobile == "+12125550147"
    assert robin.date_of_birth == date(1979, 11, 23)
    assert robin.time_zone == "America/Chicago"
    assert robin.sms_consent_at == timezone.now()
    assert robin.sms_consent_method == ConsentMethod.VERBAL
    assert robin.can_receive_sms and not robin.has_express_sms_consent
    assert _audited(AuditAction.ADDED_PATIENT) == ["desk"]
    page = desk.get(response["Location"]).text
    assert "Robin Rowan added." in page and "(212) 555-0147" in page


@pytest.mark.parametrize(
    ("field", "typed", "words"),
    [
        ("mobile", "555-01", "555-01 is not a valid phone number."),
        ("mobile", "(800) 555-0147", "is not a mobile number"),
        ("mobile", "call me", "call me is not a phone number"),
        ("date_of_birth", "2001-02-30", "Enter a real date, as year-month-day"),
        ("date_of_birth", "2031-05-01", "The date of birth is in the future."),
        ("date_of_birth", "1850-05-01", "Give a date between 1900 and 2199."),
        ("time_zone", "Mars/Olympus_Mons", "Mars/Olympus_Mons is not a time zone name"),
        ("email", "robin@", "Enter a valid email address."),
        ("first_name", "", "This field is required."),
    ],
)
def test_bad_input_is_refused_next_to_its_field_and_nothing_typed_is_lost(
    desk, clinic, field, typed, words
):
    form = _patient_form(
        **{field: typed}, sms_consent_at="2029-12-20", sms_consent_method="paper_form"
    )
    page = desk.post(reverse("desk_new_patient"), form)
    assert page.status_code == 200
    assert not Patient.objects.filter(last_name="Rowan").exists()
    assert page.context["form"].errors[field] and words in str(page.context["form"].errors[field])
    assert words.replace("'", "&#x27;") in page.text
    assert "Nothing was saved" in page.text
    # Everything typed is still there, the bad value included.
    for name, value in form.items():
        if value not in ("", "on"):
            assert f'value="{value}"' in page.text or f'"{value}" selected' in page.text, name


def test_consent_needs_its_method_a_mobile_and_a_day_not_to_come(desk, clinic):
    url = reverse("desk_new_patient")
    no_method = desk.post(url, _patient_form(sms_consent_at="2029-12-20")).context["form"]
    assert no_method.errors["sms_consent_method"] == ["Record how the patient agreed to texts."]
    no_day = desk.post(url, _patient_form(sms_express_consent_method="verbal")).context["form"]
    assert no_day.errors["sms_express_consent_at"] == [
        "Give the day the patient agreed, or leave both empty."
    ]
    no_mobile = desk.post(
        url, _patient_form(mobile="", sms_consent_at="2029-12-20", sms_consent_method="verbal")
    ).context["form"]
    assert no_mobile.errors["mobile"] == ["Text consent needs a mobile number."]
    tomorrow = desk.post(
        url, _patient_form(sms_consent_at="2030-01-03", sms_consent_method="verbal")
    ).context["form"]
    assert tomorrow.errors["sms_consent_at"] == ["Consent cannot be given on a day still to come."]
    express_alone = desk.post(
        url,
        _patient_form(sms_express_consent_at="2029-12-20", sms_express_consent_method="verbal"),
    ).context["form"]
    assert "Express consent to care texts is consent to texts" in str(
        express_alone.errors["sms_consent_at"]
    )
    # A reply by text is recorded by the text itself, never chosen by the desk.
    keyword = desk.post(
        url, _patient_form(sms_consent_at="2029-12-20", sms_consent_method="sms_keyword")
    ).context["form"]
    assert "sms_keyword is not one of the available choices" in str(
        keyword.errors["sms_consent_method"]
    )
    assert not Patient.objects.filter(last_name="Rowan").exists()


# -- editing a patient -------------------------------------------------------------


def test_editing_changes_only_what_was_changed_and_the_trail_names_the_fields(desk, clinic):
    patient = clinic.patient(
        "Avery",
        "Applewood",
        sms_consent_at=at(date(2029, 6, 1), "15:30"),
        sms_consent_method="web_form",
    )
    page = desk.get(reverse("desk_patient", args=[patient.pk])).text
    edit_url = reverse("desk_edit_patient", args=[patient.pk])
    assert edit_url in page
    form = desk.get(edit_url).context["form"]
    data = {
        name: form[name].value() for name in form.fields if form[name].value() not in (None, False)
    }
    data = {k: ("on" if v is True else v) for k, v in data.items()}
    assert data["mobile"] == patient.mobile_display and data["sms_consent_at"] == date(2029, 6, 1)
    data["email"] = "avery@example.org"
    response = desk.post(edit_url, data)
    assert response["Location"] == reverse("desk_patient", args=[patient.pk])
    consent_before = patient.sms_consent_at
    patient.refresh_from_db()
    assert patient.email == "avery@example.org"
    assert patient.sms_consent_at == consent_before  # the day kept: its time too
    assert _audited(AuditAction.CHANGED_PATIENT) == ["email"]
    # Saving again with nothing changed changes nothing and records no change.
    data["email"] = patient.email
    again = desk.post(edit_url, data, follow=True)
    assert "Nothing was changed." in again.text
    assert _audited(AuditAction.CHANGED_PATIENT) == ["email"]


def test_an_opt_out_is_never_lifted_without_the_desk_saying_the_patient_asked_again(desk, clinic):
    patient = clinic.patient(
        "Avery",
        "Applewood",
        sms_consent_at=at(date(2029, 6, 1), "15:30"),
        sms_consent_method="web_form",
    )
    Patient.objects.filter(pk=patient.pk).update(sms_opted_out_at=at(date(2029, 12, 1), "09:00"))
    edit_url = reverse("desk_edit_patient", args=[patient.pk])
    page = desk.get(edit_url)
    assert "opted out of texts (STOP) on Sat 2029-12-01 09:00" in page.text
    base = _patient_form(
        first_name="Avery",
        last_name="Applewood",
        date_of_birth=patient.date_of_birth.isoformat(),
        mobile=patient.mobile,
        email=patient.email,
        time_zone=patient.time_zone,
        sms_consent_at="2029-06-01",
        sms_consent_method="web_form",
    )
    # Another detail changed: the opt-out stays.
    base["email"] = "avery@example.org"
    desk.post(edit_url, base)
    patient.refresh_from_db()
    assert patient.email == "avery@example.org"
    assert patient.sms_opted_out_at == at(date(2029, 12, 1), "09:00")
    assert not patient.can_receive_sms
    # New consent typed over it, without saying the patient asked again: refused.
    renew = base | {"sms_consent_at": TODAY.isoformat(), "sms_consent_method": "verbal"}
    refused = desk.post(edit_url, renew)
    assert "Record new consent only if they asked to get texts again" in refused.text
    patient.refresh_from_db()
    assert not patient.can_receive_sms and patient.sms_consent_method == "web_form"
    assert _audited(AuditAction.CHANGED_PATIENT) == ["email"]  # the refusal changed nothing
    # Ticked without a consent after the opt-out: refused too.
    only_ticked = desk.post(edit_url, base | {"texts_again": "on"}).context["form"]
    assert "Give the day the patient agreed to texts again" in str(
        only_ticked.errors["texts_again"]
    )
    # Ticked with express consent alone: texts themselves need consent again.
    express_only = base | {
        "texts_again": "on",
        "sms_express_consent_at": TODAY.isoformat(),
        "sms_express_consent_method": "verbal",
    }
    assert desk.post(edit_url, express_only).context["form"].errors["texts_again"]
    patient.refresh_from_db()
    assert patient.sms_express_consent_at is None
    # Said in so many words: texts again, from now.
    desk.post(edit_url, renew | {"texts_again": "on"})
    patient.refresh_from_db()
    assert patient.can_receive_sms
    assert patient.sms_consent_at == timezone.now() and patient.sms_consent_method == "verbal"
    assert patient.sms_opted_out_at == at(date(2029, 12, 1), "09:00")  # the record stays
    assert _audited(AuditAction.CHANGED_PATIENT)[-1] == "sms_consent_at, sms_consent_method"


def test_a_patient_of_another_clinic_or_none_is_404(desk, clinic):
    assert desk.get(reverse("desk_edit_patient", args=[987654])).status_code == 404
    assert desk.get(reverse("desk_book_visit", args=[987654])).status_code == 404


# -- booking a single visit ----------------------------------------------------------


def _book_url(patient, visit_type, **query) -> str:
    url = reverse("desk_book_visit", args=[patient.pk]) + f"?type={visit_type.pk}"
    return url + "".join(f"&{k}={v}" for k, v in query.items())


def test_the_desk_books_a_visit_at_an_offered_time_with_its_whole_team(desk, clinic):
    clinic.add_to_team(clinic.iv, "therapist", stays_minutes=60)
    patient = clinic.patient("Avery", "Applewood")
    page = desk.get(reverse("desk_patient", args=[patient.pk])).text
    assert reverse("desk_book_visit", args=[patient.pk]) in page
    chooser = desk.get(reverse("desk_book_visit", args=[patient.pk]))
    assert "Iv Infusion (120 min: prescriber + therapist)" in chooser.text
    url = _book_url(patient, clinic.iv)
    page = desk.get(url)
    slots = page.context["form"].slots
    assert slots and offered_times(page.text) == list(slots)
    # From now on, earliest first, in the window the page names: no earlier window today.
    assert all(slot.start > timezone.now() for slot in slots.values())
    assert page.context["times"].first == TODAY and page.context["earlier_url"] == ""
    assert "from=" in page.context["later_url"]
    value, slot = list(slots.items())[2]
    assert [m.clinician for m in slot.staff] == [clinic.therapist]
    assert "Is a ride home arranged?" in page.text
    response = desk.post(url, {"slot": value, "ride_home_arranged": "yes", "action": "book"})
    assert response["Location"] == reverse("desk_patient", args=[patient.pk])
    visit = Visit.objects.get(patient=patient)
    assert (visit.start, visit.clinician, visit.room) == (slot.start, slot.clinician, slot.room)
    assert [p.clinician for p in visit.staff] == [slot.clinician, clinic.therapist]
    assert visit.status == VisitStatus.BOOKED and visit.ride_home_arranged
    assert AuditEvent.objects.filter(
        action=AuditAction.CHANGED_VISIT, detail=f"visit {visit.pk}: booked"
    ).exists()
    page = desk.get(response["Location"]).text
    assert "Booked: Iv Infusion" in page and "Upcoming visits (1)" in page


def test_a_dose_asks_the_ride_home_and_other_visits_do_not(desk, clinic):
    patient = clinic.patient()
    url = _book_url(patient, clinic.iv)
    value = next(iter(desk.get(url).context["form"].slots))
    unanswered = desk.post(url, {"slot": value})
    assert "This field is required." in str(unanswered.context["form"].errors["ride_home_arranged"])
    desk.post(url, {"slot": value, "ride_home_arranged": "no"})
    dose = Visit.objects.get(patient=patient)
    assert not dose.ride_home_arranged and dose.lacks_ride_home
    integration = desk.get(_book_url(patient, clinic.integration))
    assert "ride_home_arranged" not in integration.context["form"].fields
    assert "ride home" not in integration.text.lower()


def test_earlier_and_later_windows(desk, clinic):
    patient = clinic.patient()
    later = desk.get(_book_url(patient, clinic.integration, **{"from": "2030-02-04"}))
    times = later.context["times"]
    assert times.first == date(2030, 2, 4)
    assert all(
        slot.start.date() >= date(2030, 2, 4) for slot in later.context["form"].slots.values()
    )
    # The windows either side: earlier from before it, later from its last day on.
    assert times.earlier < date(2030, 2, 4) <= times.last <= times.later
    assert f"from={times.earlier}" in later.context["earlier_url"]
    assert f"from={times.later}" in later.context["later_url"]
    assert (
        desk.get(_book_url(patient, clinic.integration, **{"from": "nonsense"})).status_code == 404
    )


def test_a_dose_the_rules_refuse_is_offered_no_time_and_the_page_says_why(desk, clinic):
    patient = clinic.patient("Blake", "Unscreened", screened=False)
    url = _book_url(patient, clinic.iv)
    page = desk.get(url)
    words = (
        "Blake Unscreened's screening has not been cleared by a prescriber; "
        "dosing visits cannot be booked or confirmed until it is."
    )
    assert page.context["times"].slots == []
    assert words.replace("'", "&#x27;") in page.text
    # A time typed in anyway: booking refuses it in the rule's words.
    start = at(date(2030, 1, 7), "10:00").isoformat()
    typed = f"{clinic.prescriber.pk}:{clinic.room1.pk}::{start}"
    refused = desk.post(url, {"slot": typed, "ride_home_arranged": "yes"})
    assert refused.status_code == 200
    assert "The visit was not booked:" in refused.text
    assert words.replace("'", "&#x27;") in refused.text
    assert not Visit.objects.filter(patient=patient).exists()
    assert _audited(AuditAction.CHANGED_VISIT) == []  # a refusal leaves no trace of a change


def test_a_time_taken_since_the_page_was_drawn_is_refused_in_the_rules_words(desk, clinic):
    patient = clinic.patient("Avery", "Applewood")
    url = _book_url(patient, clinic.integration)
    value, slot = next(iter(desk.get(url).context["form"].slots.items()))
    # Another desk books the same therapist at that time first.
    booking.book(
        patient=clinic.patient("Other", "Person"),
        visit_type=clinic.integration,
        clinician=slot.clinician,
        start=slot.start,
    )
    lost = desk.post(url, {"slot": value})
    assert lost.status_code == 200
    local = timezone.localtime(slot.start, clinic.clinic.tz)
    end = local + timedelta(minutes=50)
    assert f"{slot.clinician} is booked {local:%H:%M}-{end:%H:%M} by another visit." in lost.text
    assert not Visit.objects.filter(patient=patient).exists()
    # The page offers fresh times, without the one taken.
    assert value not in lost.context["form"].slots


def test_only_the_desk_and_clinic_admins_open_the_new_pages(client, clinic):
    from tests.page_helpers import sign_in_verified

    patient = clinic.patient()
    urls = [
        reverse("desk_new_patient"),
        reverse("desk_edit_patient", args=[patient.pk]),
        reverse("desk_book_visit", args=[patient.pk]),
        _book_url(patient, clinic.integration),
    ]
    for url in urls:
        assert client.get(url)["Location"].startswith("/login/"), url
        assert client.post(url, _patient_form())["Location"].startswith("/login/"), url
    sign_in_verified(client, clinic.therapist.user)
    for url in urls:
        assert client.get(url).status_code == 403, url
        assert client.post(url, _patient_form()).status_code == 403, url
    assert not Patient.objects.filter(last_name="Rowan").exists()
    assert not Visit.objects.exists()
