"""``manage.py seed_demo``: a demo clinic with synthetic staff, patients and bookings.

It only orders the demo's layers, each of which lives beside its own code:
scheduling (``scheduler.demo``: clinic, staff, rooms, visit types, patients, a
few visits, calendars), then plans (``plans.demo``: protocols, screenings and
the visits they were done in, first doses and their integration sessions),
then reminders (``notifications.demo``: policies, and the messages of the
visits already booked), then a few patients waiting for a dosing time
(``waitlist.demo``), then who hears of answers that need review, a course of
questionnaire scores and answers that need a clinician today
(``questionnaires.demo``), then the sign-in groups' permissions (``desk.demo``),
then the apps that hear ``scheduler.demo.demo_seeded`` (the FHIR API's demo client).
Every layer is idempotent, so the command is: run it again and nothing is added.
"""

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from desk import demo as desk_demo
from notifications import demo as notifications_demo
from plans import demo as plans_demo
from plans.demo import PlansDemo
from questionnaires import asking
from questionnaires import demo as questionnaires_demo
from scheduler import demo as scheduler_demo
from scheduler.demo import DENVER_STAFF, STAFF, SchedulingDemo, demo_seeded
from scheduler.models import Visit
from waitlist import demo as waitlist_demo


class Command(BaseCommand):
    help = "Create or refresh the demo clinic (synthetic data only). Safe to run again."

    def handle(self, *args, **options):
        with transaction.atomic():
            demo = scheduler_demo.seed()
            plans = plans_demo.seed(demo.clinic, demo.patients)
            notifications_demo.seed(demo.clinic)
            # The organisation's second location, seeded by the same functions.
            denver = scheduler_demo.seed_second_location()
            denver_plans = plans_demo.seed_second_location(
                denver.clinic, denver.patients, demo.patients
            )
            notifications_demo.seed(denver.clinic)
            # The demo's bookings were written directly: ask what the rules ask before them.
            asking.plan_upcoming()
            waitlist_demo.seed(demo.clinic, demo.patients)
            questionnaires_demo.seed(demo.clinic, demo.patients)
            desk_demo.seed()
            keys = desk_demo.seed_second_factors()
            notes = [
                line for _, lines in demo_seeded.send(self, clinic=demo.clinic) for line in lines
            ]
        self.report([(demo, plans), (denver, denver_plans)], keys, notes)

    def report(
        self,
        locations: list[tuple[SchedulingDemo, PlansDemo]],
        keys: dict[str, str],
        notes: list[str],
    ) -> None:
        out = self.stdout
        for demo, plans in locations:
            clinic, booked = demo.clinic, demo.booked + plans.booked
            out.write(self.style.SUCCESS(f"Demo clinic ready: {clinic} ({clinic.time_zone})"))
            counts = [
                ("rooms", clinic.rooms.count()),
                ("clinicians", clinic.clinicians.count()),
                ("visit types", clinic.visit_types.count()),
                ("patients", clinic.patients.count()),
                ("visits", Visit.objects.at_clinic(clinic).count()),
            ]
            out.write("  " + ", ".join(f"{count} {label}" for label, count in counts))
            out.write(f"  {len(booked)} visits booked by this run.")
            out.write("  Protocols: " + ", ".join(p.slug for p in plans.protocols))
        out.write("")
        out.write("Staff logins (demo passwords; never use them on a real installation):")
        logins = list({member.username: member for member in STAFF + DENVER_STAFF}.values())
        width = max(len(member.username) for member in logins) + 2
        for member in logins:
            out.write(f"  {member.username:<{width}}{member.password:<24}{member.role}")
        out.write("")
        out.write(
            "Clinic admins and clinicians then type a code from an authenticator app. Add the"
        )
        out.write(
            "demo key to any app (time-based), or print the current code with "
            "`manage.py demo_code NAME`:"
        )
        for username, key in keys.items():
            out.write(f"  {username:<{width}}{key}")
        out.write("")
        out.write(f"Admin: {settings.SITE_URL}/admin/")
        feeds = [feed for demo, _ in locations for feed in demo.feeds]
        if feeds:
            # Only the token's hash is stored: these addresses can be shown now or never.
            out.write("")
            out.write("Calendar feeds issued by this run (subscribe from any calendar app):")
            for clinician, url in feeds:
                out.write(f"  {clinician}: {url}")
        if notes:
            out.write("")
            for line in notes:
                out.write(line)
