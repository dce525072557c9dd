"""Several clinics on one installation: who works where, what each desk sees, where a visit is.

A desk user works in the clinic they chose (remembered across sign-ins) and
sees its visits and patients only; a patient of one clinic is booked at
another through a protocol open to the organisation's other clinics; texts,
invites and the patient's page name the clinic the visit is held at.
"""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from notifications.content import email_content, sms_body
from notifications.models import Channel, Message, Purpose
from notifications.webhooks import handle_inbound
from plans import care_plans
from plans.generator import NotOpenToPatient, generate
from plans.models import Anchor, Protocol, ProtocolStep
from scheduler.models import ChosenClinic, Patient, Visit
from scheduler.roles import Role, access_of
from tests.conftest import MONDAY, SmallClinic, at
from tests.fhir_helpers import bearer
from tests.page_helpers import (
    clinic_admin,
    failed_message,
    front_desk,
    sign_in_verified,
    staff_user,
)

pytestmark = pytest.mark.django_db

DENVER = "America/Denver"


@pytest.fixture
def denver(clinic) -> SmallClinic:
    """A second location of the same organisation, after the first (``clinic``)."""
    other = SmallClinic(DENVER)
    other.clinic.name = "Riverside Wellness Denver"
    other.clinic.phone = "+13035550100"
    other.clinic.address = "1200 Sample Street, Denver"
    other.clinic.save()
    return other


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def choose(client: Client, clinic) -> None:
    response = client.post(reverse("choose_clinic"), {"clinic": clinic.pk})
    assert response.status_code == 302


def visit_at(place: SmallClinic, patient, hh_mm: str = "10:00") -> Visit:
    start = at(MONDAY, hh_mm, place.clinic.time_zone)
    return Visit.objects.create(
        patient=patient,
        visit_type=place.integration,
        clinician=place.therapist,
        start=start,
        end=start + place.integration.duration,
    )


# -- memberships and the switcher ---------------------------------------------------


def test_the_chosen_clinic_is_remembered_after_signing_out_and_in_again(clinic, denver):
    desk = front_desk()
    assert access_of(desk).clinic == clinic.clinic  # the first, before any choice
    client = signed_in(desk)
    choose(client, denver.clinic)
    client.post(reverse("logout"))
    again = signed_in(type(desk).objects.get(pk=desk.pk))  # another session, another device
    page = again.get(reverse("desk_today")).text
    assert "Riverside Wellness Denver" in page
    assert ChosenClinic.objects.get(user=desk).clinic == denver.clinic


def test_a_clinic_the_user_is_no_member_of_is_refused_and_nothing_changes(clinic, denver):
    desk = front_desk(clinics=[clinic.clinic])
    client = signed_in(desk)
    for posted in (denver.clinic.pk, "", "abc", 2**70):
        assert client.post(reverse("choose_clinic"), {"clinic": posted}).status_code == 403
    assert not ChosenClinic.objects.filter(user=desk).exists()
    assert access_of(desk).clinic == clinic.clinic


def test_the_switcher_shows_only_to_users_of_more_than_one_clinic(clinic, denver):
    one = signed_in(front_desk(clinics=[clinic.clinic])).get(reverse("desk_today")).text
    assert 'id="clinic-choice"' not in one
    both = signed_in(front_desk()).get(reverse("desk_today")).text
    assert 'id="clinic-choice"' in both
    assert "Riverside Wellness Denver" in both and clinic.clinic.name in both


def test_a_switch_returns_to_the_same_page_of_the_other_clinic_but_not_to_a_row_of_the_first(
    clinic, denver
):
    client = signed_in(front_desk())
    week = reverse("desk_this_week")
    response = client.post(reverse("choose_clinic"), {"clinic": denver.clinic.pk, "next": week})
    assert response["Location"] == week
    patient = reverse("desk_patient", args=[clinic.patient().pk])
    response = client.post(reverse("choose_clinic"), {"clinic": clinic.clinic.pk, "next": patient})
    assert response["Location"] == reverse("desk_today")
    response = client.post(
        reverse("choose_clinic"), {"clinic": clinic.clinic.pk, "next": "https://elsewhere.example"}
    )
    assert response["Location"] == reverse("desk_today")


def test_roles_are_those_held_in_the_chosen_clinic(clinic, denver):
    user = front_desk(clinics=[clinic.clinic])
    user.memberships.create(clinic=denver.clinic, role="admin")
    client = signed_in(user)
    assert access_of(user).roles == {Role.FRONT_DESK}
    # Clinic admins sign in with a second factor; the desk of this clinic does not.
    assert client.get(reverse("desk_scores")).status_code == 403
    choose(client, denver.clinic)
    response = client.get(reverse("desk_scores"))
    assert response.status_code == 302 and "second-factor" in response["Location"]
    assert access_of(type(user).objects.get(pk=user.pk)).roles == {Role.ADMIN}


def test_a_clinician_works_at_their_own_clinic_and_a_superuser_at_every_one(clinic, denver):
    therapist = denver.therapist.user
    assert access_of(therapist).clinics == (denver.clinic,)
    assert Role.CLINICIAN in access_of(therapist).roles
    boss = staff_user(None, is_superuser=True)
    assert access_of(boss).clinics == (clinic.clinic, denver.clinic)
    assert access_of(boss).roles == {Role.ADMIN}


def test_a_desk_user_without_a_membership_is_refused_the_desk(clinic):
    user = staff_user(None, is_staff=False)
    assert signed_in(user).get(reverse("desk_today")).status_code == 403


def test_the_groups_migration_makes_every_group_member_a_member_of_every_clinic(clinic, denver):
    from importlib import import_module

    from django.apps import apps

    desk, admin = front_desk(clinics=[]), clinic_admin(clinics=[])
    import_module("scheduler.migrations.0024_memberships_from_groups").memberships_from_groups(
        apps, None
    )
    assert set(desk.memberships.values_list("clinic", "role")) == {
        (clinic.clinic.pk, "front_desk"),
        (denver.clinic.pk, "front_desk"),
    }
    assert admin.memberships.count() == 2


# -- each desk page shows the chosen clinic only ------------------------------------


def test_a_visit_at_the_other_clinic_is_absent_from_this_clinics_day_week_and_grid(clinic, denver):
    here = visit_at(clinic, clinic.patient("Avery", "Applewood"))
    there = visit_at(denver, denver.patient("Casey", "Coldwater"))
    client = signed_in(front_desk())
    for name in ("desk_day", "desk_week"):
        page = client.get(reverse(name, args=[MONDAY.isoformat()])).text
        assert f"/desk/visits/{here.pk}/" in page and f"/desk/visits/{there.pk}/" not in page
    by_room = client.get(reverse("desk_day", args=[MONDAY.isoformat()]), {"by": "room"}).text
    assert "Coldwater" not in by_room and "(CC)" not in by_room
    choose(client, denver.clinic)
    page = client.get(reverse("desk_day", args=[MONDAY.isoformat()])).text
    assert f"/desk/visits/{there.pk}/" in page and f"/desk/visits/{here.pk}/" not in page


def test_search_finds_the_clinics_own_patients_and_those_with_a_visit_there(clinic, denver):
    casey = denver.patient("Casey", "Coldwater")
    avery = clinic.patient("Avery", "Applewood")
    client = signed_in(front_desk())
    found = f"/desk/patients/{casey.pk}/"
    assert found not in client.get(reverse("desk_patients"), {"q": "Coldwater"}).text
    assert client.get(reverse("desk_patient", args=[casey.pk])).status_code == 404
    choose(client, denver.clinic)
    found = f"/desk/patients/{avery.pk}/"
    assert found not in client.get(reverse("desk_patients"), {"q": "Applewood"}).text
    visit_at(denver, avery)  # a New York patient booked in Denver
    assert found in client.get(reverse("desk_patients"), {"q": "Applewood"}).text
    assert client.get(reverse("desk_patient", args=[avery.pk])).status_code == 200


def test_the_patient_page_lists_every_visit_with_where_it_is_held(clinic, denver):
    avery = clinic.patient("Avery", "Applewood")
    visit_at(clinic, avery, "09:00")
    visit_at(denver, avery, "14:00")
    page = signed_in(front_desk()).get(reverse("desk_patient", args=[avery.pk])).text
    assert f"at {clinic.clinic.name}" in page and "at Riverside Wellness Denver" in page


def test_the_admin_shows_a_visit_in_the_zone_of_the_clinic_it_is_held_at(clinic, denver):
    avery = clinic.patient("Avery", "Applewood")  # a New York patient, seen in Denver
    visit = visit_at(denver, avery, "14:00")
    admin = Client()
    sign_in_verified(admin, get_user_model().objects.create_superuser("root", password=None))

    listed = admin.get(reverse("admin:scheduler_visit_changelist")).text
    changed = admin.get(reverse("admin:scheduler_visit_change", args=[visit.pk])).text
    team = admin.get(reverse("admin:scheduler_visitparticipant_changelist")).text
    patient = admin.get(reverse("admin:scheduler_patient_change", args=[avery.pk])).text

    in_denver = visit.start.astimezone(denver.clinic.tz).strftime("%H:%M %Z")  # 14:00 MDT
    for page in (listed, team, patient):
        assert in_denver in page and "16:00" not in page  # not New York's 16:00
    assert 'value="14:00:00"' in changed or 'value="14:00"' in changed


def test_in_the_admin_a_member_of_one_clinic_sees_and_chooses_only_its_rows(clinic, denver):
    new_yorker = clinic.patient("Nora", "Northfield")  # New York only
    visitor = clinic.patient("Avery", "Applewood")  # of New York, booked in Denver
    local = denver.patient("Dana", "Dalton")
    visit_at(clinic, new_yorker, "09:00")
    visit_at(denver, visitor, "14:00")
    denver_admin = clinic_admin(clinics=[denver.clinic])
    denver_admin.is_staff = True  # the seed's admin group holds these; the test's holds none
    denver_admin.save(update_fields=["is_staff"])
    denver_admin.user_permissions.set(Permission.objects.all())
    admin = Client()
    sign_in_verified(admin, denver_admin)

    patients = admin.get(reverse("admin:scheduler_patient_changelist")).text
    assert "Dalton" in patients and "Applewood" in patients and "Northfield" not in patients
    hidden = admin.get(reverse("admin:scheduler_patient_change", args=[new_yorker.pk]))
    assert hidden.status_code == 302  # the admin's answer to "no such row"
    assert admin.get(reverse("admin:scheduler_patient_change", args=[local.pk])).status_code == 200
    visits = admin.get(reverse("admin:scheduler_visit_changelist")).text
    assert "Applewood" in visits and "Northfield" not in visits
    rooms = admin.get(reverse("admin:scheduler_visit_add")).context["adminform"].form
    assert set(rooms.fields["room"].queryset) == set(denver.clinic.rooms.all())
    clinics = admin.get(reverse("admin:scheduler_clinic_changelist")).context["cl"].result_list
    assert list(clinics) == [denver.clinic]


def test_needs_attention_counts_only_the_chosen_clinics_messages(clinic, denver):
    failed_message(visit_at(clinic, clinic.patient("Avery", "Applewood")))
    failed_message(visit_at(denver, denver.patient("Casey", "Coldwater")))
    client = signed_in(front_desk())
    page = client.get(reverse("desk_messages")).text
    assert "Applewood" in page and "Coldwater" not in page
    choose(client, denver.clinic)
    page = client.get(reverse("desk_messages")).text
    assert "Coldwater" in page and "Applewood" not in page


def test_the_day_page_keeps_its_query_count_with_two_clinics(
    clinic, denver, django_assert_max_num_queries
):
    for n in range(6):
        visit_at(denver, denver.patient("Casey", f"Coldwater{n}"), f"{9 + n:02d}:00")
    client = signed_in(front_desk())
    choose(client, denver.clinic)
    url = reverse("desk_day", args=[MONDAY.isoformat()])
    client.get(url)  # the session and the cache warm
    with django_assert_max_num_queries(30):
        assert client.get(url).status_code == 200


# -- a patient of one clinic at another ---------------------------------------------


def integration_course(
    place: SmallClinic, *, open_to_others: bool, slug: str = "integration-course"
) -> Protocol:
    protocol = Protocol.objects.create(
        clinic=place.clinic,
        name="Integration course",
        slug=slug,
        open_to_other_clinics=open_to_others,
    )
    ProtocolStep.objects.create(
        protocol=protocol, position=1, visit_type=place.integration, anchor=Anchor.START, count=1
    )
    return protocol


def test_a_plan_at_another_clinic_is_refused_unless_its_protocol_is_open(clinic, denver, now):
    avery = clinic.patient("Avery", "Applewood")
    closed = integration_course(denver, open_to_others=False)
    with pytest.raises(NotOpenToPatient, match="not open to patients of the organisation"):
        generate(avery, closed, MONDAY)
    client = signed_in(front_desk())
    choose(client, denver.clinic)
    form = {"patient": avery.pk, "protocol": closed.pk, "start_date": MONDAY.isoformat()}
    # While no protocol there is open, other clinics' patients are not even offered.
    assert "Select a valid choice" in client.post(reverse("desk_new_plan"), form).text
    integration_course(denver, open_to_others=True, slug="open-course")
    page = client.post(reverse("desk_new_plan"), form).text
    assert "is not open to patients of the organisation" in page
    assert not Visit.objects.filter(patient=avery).exists()


def test_a_plan_of_an_open_protocol_books_the_patient_at_the_other_clinic(clinic, denver, now):
    avery = clinic.patient("Avery", "Applewood")
    course = integration_course(denver, open_to_others=True)
    plan = care_plans.save_proposal(generate(avery, course, MONDAY))
    care_plans.confirm(plan)
    visit = Visit.objects.get(patient=avery)
    assert visit.clinic == denver.clinic and visit.clinician == denver.therapist
    # A proposal made while it was open is not confirmed once it is closed.
    later = care_plans.save_proposal(generate(avery, course, MONDAY + timedelta(days=14)))
    Protocol.objects.filter(pk=course.pk).update(open_to_other_clinics=False)
    with pytest.raises(care_plans.PlanNotConfirmed):
        care_plans.confirm(later)
    assert Visit.objects.filter(patient=avery).exclude(status="proposed").count() == 1


def test_texts_and_invites_name_the_visits_clinic_its_phone_and_its_zone(clinic, denver):
    avery = clinic.patient("Avery", "Applewood")  # at home in New York
    visit = visit_at(denver, avery, "10:00")  # 10:00 in Denver, noon in New York
    reminder = Message.objects.create(
        visit=visit,
        patient=avery,
        purpose=Purpose.REMINDER,
        channel=Channel.SMS,
        visit_sequence=0,
        recipient=avery.mobile,
        send_at=visit.start - timedelta(days=1),
        expires_at=visit.start,
    )
    text = sms_body(reminder, link="")
    assert "Riverside Wellness Denver" in text and "(303) 555-0100" in text
    assert "12:00 PM EDT" in text  # the patient's own zone, named as it is not the clinic's
    assert clinic.clinic.name not in text and "(212)" not in text
    invite = Message.objects.create(
        visit=visit,
        patient=avery,
        clinician=denver.therapist,
        purpose=Purpose.INVITE,
        channel=Channel.EMAIL,
        visit_sequence=0,
        recipient="therapist@example.com",
        send_at=visit.start - timedelta(days=1),
        expires_at=visit.start,
    )
    ics = email_content(invite).alternatives[0][0].replace("\r\n ", "")
    assert "DTSTART;TZID=America/Denver:20300603T100000" in ics  # staff read the clinic's zone
    assert 'ORGANIZER;CN="Riverside Wellness Denver"' in ics
    invite.clinician = None
    invite.save()
    ics = email_content(invite).alternatives[0][0].replace("\r\n ", "")
    assert "SUMMARY:Appointment at Riverside Wellness Denver" in ics
    assert "(303) 555-0100" in ics or "+13035550100" in ics
    assert "DTSTART;TZID=America/New_York:20300603T120000" in ics


def test_the_fhir_api_serves_the_visits_held_at_its_clients_clinic(client, clinic, denver):
    avery = clinic.patient("Avery", "Applewood")
    here, there = visit_at(clinic, avery, "09:00"), visit_at(denver, avery, "14:00")
    for place, visit in ((clinic, here), (denver, there)):
        token = bearer(place.clinic, "system/Appointment.read")
        bundle = client.get(
            reverse("fhir:search", args=["Appointment"]), HTTP_AUTHORIZATION=f"Bearer {token}"
        ).json()
        assert [entry["resource"]["id"] for entry in bundle["entry"]] == [str(visit.pk)]


def test_a_fhir_client_reads_the_patients_booked_at_its_clinic_and_only_those(
    client, clinic, denver
):
    visitor = clinic.patient("Avery", "Applewood")  # of New York, booked in Denver
    new_yorker = clinic.patient("Nora", "Northfield")
    visit_at(denver, visitor, "14:00")
    token = bearer(denver.clinic, "system/Appointment.read system/Patient.read")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    bundle = client.get(
        reverse("fhir:search", args=["Appointment"]), {"_include": "Appointment:patient"}, **auth
    ).json()
    included = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "include"]
    assert [(r["resourceType"], r["id"]) for r in included] == [("Patient", str(visitor.pk))]
    read = reverse("fhir:read", args=["Patient", visitor.pk])
    assert client.get(read, **auth).status_code == 200
    other = reverse("fhir:read", args=["Patient", new_yorker.pk])
    assert client.get(other, **auth).status_code == 404


def test_a_text_is_answered_in_the_name_of_the_clinic_of_the_numbers_newest_patient(clinic, denver):
    shared = "+12125550777"  # a family phone
    for place in (clinic, denver):  # Denver's patient joined last
        patient = place.patient("Avery", "Applewood")
        Patient.objects.filter(pk=patient.pk).update(mobile=shared)
    assert "Riverside Wellness Denver" in handle_inbound("SM-help-1", shared, "HELP").reply
    assert (
        "Riverside Wellness Denver" not in handle_inbound("SM-help-2", "+12125550778", "HELP").reply
    )
