"""A small synthetic clinic for tests, built directly from the models."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from functools import partial
from itertools import count
from typing import TypeVar

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction

from plans.models import CONTRAINDICATIONS, RemsEnrollment, RemsSetting, Screening
from scheduler.models import (
    Capability,
    Clinic,
    Clinician,
    Modality,
    OpeningHours,
    Patient,
    Room,
    StaffingRequirement,
    Visit,
    VisitKind,
    VisitType,
    WorkingHours,
)
from scheduler.timezones import zone
from tests.page_helpers import MEMBERS_EVERYWHERE

# Fixtures every test module may ask for by name: the messaging outboxes, the
# Twilio-compatible server, the SMTP server and Redis on loopback.
pytest_plugins = [
    "tests.reminder_helpers",
    "tests.fake_twilio",
    "tests.smtp_server",
    "tests.servers",
    "tests.safety_helpers",
]

WEEKDAYS = range(5)
_numbers = count(100)


def pytest_configure(config):
    """Patients' languages need the compiled catalogues; a fresh checkout has only the .po files."""
    from config.catalogues import compile_catalogues

    compile_catalogues(only_missing=True)


def on_postgres() -> bool:
    return connection.vendor == "postgresql"


def on_one_engine(vendor: str, why: str):
    """For a sweep that takes minutes and whose subject is the same on either engine:
    run it on ``vendor`` only (CI runs the suite on both, and has 30 minutes for all)."""
    return pytest.mark.skipif(connection.vendor != vendor, reason=f"runs on {vendor} only: {why}")


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The test database, without autovacuum on PostgreSQL.

    Tests' rows are rolled back, so the tables fill with dead rows that
    autovacuum then counts: none live. While a test's (or a module's seeded)
    transaction holds a table, it cannot give the empty pages back, and the
    planner, told "no rows in many pages", expects none in the thousands a
    later test has in flight: nested loops over them, queries of minutes (a
    CI run stopped at its time limit in one). Never vacuumed, a table's size is
    estimated from its pages as they are, rows in flight included.
    """
    if connection.vendor == "postgresql":
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            for (table,) in cursor.fetchall():
                cursor.execute(
                    f'ALTER TABLE "{table}" SET (autovacuum_enabled = false, '
                    "toast.autovacuum_enabled = false)"
                )
    yield


def at(day: date, hh_mm: str, tz_name: str = "America/New_York") -> datetime:
    """An aware datetime at wall-clock ``hh_mm`` on ``day`` in ``tz_name``."""
    return datetime.combine(day, time.fromisoformat(hh_mm), tzinfo=zone(tz_name))


class ClinicBuilder:
    def __init__(
        self, time_zone: str = "America/New_York", hours=("08:00", "18:00"), days=WEEKDAYS
    ):
        self.clinic = Clinic.objects.create(
            name=f"Test Clinic {time_zone}",
            slug=f"test-{next(_numbers)}",
            phone="+12125550100",
            address="1 Example Street",
            time_zone=time_zone,
        )
        for weekday in days:
            OpeningHours.objects.create(
                clinic=self.clinic,
                weekday=weekday,
                opens=time.fromisoformat(hours[0]),
                closes=time.fromisoformat(hours[1]),
            )
        self.infusion_chair, _ = Capability.objects.get_or_create(
            slug="infusion-chair", defaults={"name": "Infusion chair"}
        )
        self.monitoring, _ = Capability.objects.get_or_create(
            slug="monitoring", defaults={"name": "Vital-signs monitoring"}
        )
        # A test clinic may give every treatment: its setting is REMS-certified
        # (tests of the REMS gate delete it).
        self.rems_setting = RemsSetting.objects.create(
            clinic=self.clinic,
            name=f"{self.clinic.name} treatment suites",
            setting_id=f"HCS{next(_numbers)}",
            certified_on=date(2020, 1, 1),
        )

    def room(self, name: str, *capabilities: Capability) -> Room:
        room = Room.objects.create(clinic=self.clinic, name=name)
        room.capabilities.set(capabilities)
        return room

    def clinician(
        self, name: str, *roles: str, hours=("08:00", "18:00"), days=WEEKDAYS
    ) -> Clinician:
        user = get_user_model().objects.create_user(
            username=f"{name.lower().replace(' ', '.').replace('..', '.')}.{next(_numbers)}",
            password=None,
        )
        clinician = Clinician.objects.create(
            user=user,
            clinic=self.clinic,
            display_name=name,
            telehealth_link="https://video.example.com/room",
            **{f"is_{role}": True for role in roles},
        )
        for weekday in days:
            WorkingHours.objects.create(
                clinician=clinician,
                weekday=weekday,
                opens=time.fromisoformat(hours[0]),
                closes=time.fromisoformat(hours[1]),
            )
        return clinician

    def visit_type(
        self, slug: str, kind: str, minutes: int, role: str, modality: str, capability=None, **extra
    ):
        """A visit type led by one clinician in ``role`` (add places with ``add_to_team``)."""
        visit_type = VisitType.objects.create(
            clinic=self.clinic,
            name=slug.replace("-", " ").title(),
            slug=slug,
            kind=kind,
            duration_minutes=minutes,
            modality=modality,
            room_capability=capability,
            **extra,
        )
        self.add_to_team(visit_type, role)
        return visit_type

    @staticmethod
    def add_to_team(visit_type, *roles: str, **options):
        """One more place on ``visit_type``'s team, filled by any of ``roles``."""
        StaffingRequirement.objects.create(
            visit_type=visit_type,
            position=visit_type.staffing.count(),
            roles=",".join(roles),
            **options,
        )
        visit_type.__dict__.pop("seats", None)  # the cached team
        return visit_type

    def patient(
        self,
        first: str = "Avery",
        last: str = "Example",
        *,
        screened=True,
        rems_enrolled=True,
        **extra,
    ) -> Patient:
        """A patient; ``screened`` gives them a screening cleared by a prescriber (dosing allowed),
        ``rems_enrolled`` an enrollment in the Spravato REMS (Spravato allowed)."""
        patient = Patient(
            clinic=self.clinic,
            first_name=first,
            last_name=last,
            date_of_birth=date(1985, 4, 12),
            mobile=f"+1212555{next(_numbers) % 100 + 100:04d}",
            email=f"{first.lower()}.{last.lower()}@example.com",
            time_zone=self.clinic.time_zone,
            **extra,
        )
        patient.full_clean()
        patient.save()
        if screened:
            self.clear_screening(patient)
        if rems_enrolled:
            RemsEnrollment.objects.create(patient=patient, enrolled_on=date(2020, 1, 1))
        return patient

    def clear_screening(self, patient: Patient) -> Screening:
        prescriber = self.clinic.clinicians.filter(is_prescriber=True).first() or self.clinician(
            "Dr. Screener", "prescriber"
        )
        screening = Screening.objects.create(
            patient=patient, answers=dict.fromkeys(CONTRAINDICATIONS, False), answered_by=prescriber
        )
        screening.clear(prescriber)
        return screening


class SmallClinic(ClinicBuilder):
    """Three rooms, a prescriber, a therapist, a nurse and the usual visit types."""

    def __init__(self, time_zone="America/New_York", **kwargs):
        super().__init__(time_zone, **kwargs)
        self.room1 = self.room("Room 1", self.infusion_chair, self.monitoring)
        self.room2 = self.room("Room 2", self.monitoring)
        self.room3 = self.room("Room 3")
        self.prescriber = self.clinician("Dr. Alvarez", "prescriber")
        self.therapist = self.clinician("Sam Rivers", "therapist", hours=("09:00", "17:00"))
        self.nurse = self.clinician("Nurse Kim", "nurse")
        self.screening = self.visit_type(
            "screening", VisitKind.SCREENING, 60, "prescriber", Modality.IN_PERSON
        )
        self.iv = self.visit_type(
            "iv-infusion",
            VisitKind.DOSING,
            120,
            "prescriber",
            Modality.IN_PERSON,
            self.infusion_chair,
            dosing_route="iv",
            monitoring_minutes=60,
        )
        self.integration = self.visit_type(
            "integration", VisitKind.INTEGRATION, 50, "therapist", Modality.TELEHEALTH
        )

    def doses_one_after_another(self, patients, first: datetime) -> list[Visit]:
        """An IV dose for each patient, from ``first`` on, three hours apart, in one insert.

        They follow any visit the prescriber already has from ``first`` on, so that
        no two overlap (PostgreSQL refuses overlaps).
        """
        taken = Visit.objects.filter(clinician=self.prescriber, start__gte=first).count()
        return Visit.objects.bulk_create(
            Visit(
                patient=patient,
                visit_type=self.iv,
                clinician=self.prescriber,
                room=self.room1,
                start=first + timedelta(hours=3 * i),
                end=first + timedelta(hours=3 * i) + self.iv.duration,
            )
            for i, patient in enumerate(patients, start=taken)
        )


@pytest.fixture
def clinic(db) -> SmallClinic:
    return SmallClinic()


# A Monday far enough ahead never to be in the past, and not in a DST week.
MONDAY = date(2030, 6, 3)


# The moment the ``now`` fixture stops the clock at: before every fixed date these tests book.
NOW = datetime(2030, 1, 2, 12, 0, tzinfo=zone("UTC"))


@pytest.fixture
def now():
    """The clock on 2030-01-02 (``NOW``), before every fixed date these tests book."""
    import time_machine

    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hashing():
    """MD5 for the tests' passwords: the production hasher (PBKDF2) costs ~0.3 s a password.

    Django's own advice for test settings; no test is about the hasher's
    strength. ``seed_demo`` alone sets eight passwords, and many fixtures seed.
    Servers the tests start in their own process keep the production hasher.
    """
    from django.test import override_settings

    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


# Tests that reach the database, by the fixtures or the marker that give them one.
DATABASE_FIXTURES = {"db", "transactional_db", "live_server", "django_db_reset_sequences"}


def uses_database(request) -> bool:
    """Whether the test behind ``request`` reaches the database."""
    marked = request.node.get_closest_marker("django_db") is not None
    return marked or bool(DATABASE_FIXTURES & set(request.fixturenames))


@pytest.fixture(autouse=True, scope="session")
def _var_dir_of_the_tests(tmp_path_factory):
    """Files the code writes under VAR_DIR (the demo's FHIR key) go to a temporary
    directory, not the working tree's var/."""
    from django.test import override_settings

    with override_settings(VAR_DIR=tmp_path_factory.mktemp("var")):
        yield


@pytest.fixture(autouse=True)
def _asking_rules(request):
    """The default asking rules (questionnaires migration 0002) only where a test asks for them.

    They put PHQ-9 and GAD-7 before every screening, dose and check-in, so each
    such booking adds a text and an email to the outbox: tests of other
    messages count their own without them, and a test about the questions
    says so (``@pytest.mark.questionnaires``), which loads them with the
    instruments. Either way the state is the same whatever ran before: a
    transactional test empties every table, migrations' rows too.
    """
    wanted = request.node.get_closest_marker("questionnaires") is not None
    if not uses_database(request):
        yield
        return
    request.getfixturevalue("_django_db_helper")  # what the db fixtures and the marker do
    load_asking_rules(wanted)
    yield


def load_asking_rules(wanted: bool) -> None:
    """PHQ-9, GAD-7 and the default rules, as migrated (get_or_create: no change if
    there); no asking rule at all unless ``wanted``."""
    from importlib import import_module

    from django.apps import apps

    from questionnaires.models import AskingRule

    defaults = import_module("questionnaires.migrations.0002_phq9_gad7_and_default_rules")
    defaults.add_instruments(apps, None)
    if not wanted:
        AskingRule.objects.all().delete()


# The module fixtures (``seeded_for_the_module``) whose rows are in the database now.
_open_seeds: list[str] = []
Seeded = TypeVar("Seeded")


@contextmanager
def seeded_for_the_module(
    name: str, django_db_blocker, seed: Callable[[], Seeded]
) -> Iterator[Seeded]:
    """What ``seed()`` writes, once per test worker for a module's tests that ask for the
    module fixture ``name`` that uses this (and asks for ``django_db_setup``), rather
    than once per test.

    Seeding the demo takes seconds, and a module may ask for it dozens of times.
    The rows are written at ``NOW`` and with no asking rule, as ``_asking_rules``
    leaves the database for tests without the questionnaires mark (so not for
    tests with it), in a transaction left open until the module's last test
    and rolled back then. Each test runs in a savepoint inside it, as any
    database test does (pytest-django), so each starts from the seeded rows and
    leaves nothing behind. pytest-django runs a module's database tests in the
    order they are written: those that do not ask for ``name`` come before the
    first that does (``_outside_seeded_rows`` fails a test that would see rows
    it did not ask for).
    """
    import time_machine

    with django_db_blocker.unblock(), transaction.atomic():
        with time_machine.travel(NOW, tick=False):
            load_asking_rules(wanted=False)
            seeded = seed()
        _open_seeds.append(name)
        try:
            with django_db_blocker.block():
                yield seeded
        finally:
            _open_seeds.remove(name)
            transaction.set_rollback(True)


@pytest.fixture(scope="module")
def demo_seeded(django_db_setup, django_db_blocker):
    """``seed_demo``'s clinic, seeded once per worker for the module's tests that ask
    for it (``seeded_for_the_module``)."""
    from io import StringIO

    from django.core.management import call_command

    seed = partial(call_command, "seed_demo", stdout=StringIO())
    with seeded_for_the_module("demo_seeded", django_db_blocker, seed):
        yield


@pytest.fixture(autouse=True)
def _members_everywhere_per_test():
    """The desk and admin users made members of every clinic are the test's own."""
    yield
    MEMBERS_EVERYWHERE.clear()


@pytest.fixture(autouse=True)
def _outside_seeded_rows(request):
    """A database test sees a module's seeded rows only if it asks for them."""
    if _open_seeds and uses_database(request):
        unasked = [name for name in _open_seeds if name not in request.fixturenames]
        assert not unasked, f"tests that do not ask for {unasked} go before the first that does"


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Rate-limit counts live in the cache (config.throttle): each test starts with none."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def admin_client(db, admin_user):
    """pytest-django's superuser client, with the second step of signing in passed."""
    from django.test import Client

    from tests.page_helpers import sign_in_verified

    client = Client()
    sign_in_verified(client, admin_user)
    return client
