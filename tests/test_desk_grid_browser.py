"""The front desk books a visit by choosing a free quarter hour of the day grid, in a real Chromium:
with the mouse, and with the keyboard alone.

The same setup as tests/test_browser.py (its ``browser`` and ``page`` fixtures:
Debian's /usr/bin/chromium through Playwright, no browser download); skipped,
saying why, when either is missing. Two tests: a browser test is slow.
"""

import re
import shutil
from datetime import datetime, time

import pytest
from django.utils import timezone

from scheduler.models import Visit, VisitStatus
from tests.conftest import SmallClinic
from tests.page_helpers import front_desk
from tests.test_browser import (  # noqa: F401 (fixtures)
    CHROMIUM,
    PASSWORD,
    _next_weekday,
    _sign_in,
    browser,
    page,
)

pytestmark = pytest.mark.skipif(
    not shutil.which(CHROMIUM), reason=f"{CHROMIUM} is missing (apt-get install chromium)"
)


def test_front_desk_books_a_free_quarter_hour_of_the_day_grid_and_opens_the_visit_from_its_block(
    page,  # noqa: F811 (the fixture)
    live_server,
    transactional_db,
):
    clinic = SmallClinic()
    avery = clinic.patient("Avery", "Applewood")
    user = front_desk(password=PASSWORD)
    day = _next_weekday(timezone.localdate(timezone=clinic.clinic.tz), 1)
    _sign_in(page, live_server, user.username)
    page.wait_for_url("**/desk/")
    page.goto(f"{live_server.url}/desk/day/{day.isoformat()}/")

    # Blocks and free quarter hours lie on a grid of rows: 10:15 is the tenth row from 08:00.
    column = page.get_by_role("region", name="Sam Rivers")
    cell = column.get_by_role("link", name="Book Sam Rivers at 10:15")
    first_row = column.get_by_role("link", name="Book Sam Rivers at 09:00").bounding_box()
    box = cell.bounding_box()
    assert round((box["y"] - first_row["y"]) / box["height"]) == 5  # 09:00 -> 10:15
    cell.click()

    heading = page.get_by_role("heading", level=1)
    assert heading.inner_text() == f"Book Sam Rivers on {day:%A} {day.day} {day:%B} at 10:15"
    page.get_by_label("Name, phone or email").fill("Applewood")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="Applewood, Avery").click()
    page.get_by_label("Visit type").select_option(label="Integration (50 min: therapist)")
    page.get_by_role("button", name="Show free times").click()
    start = datetime.combine(day, time(10, 15), tzinfo=clinic.clinic.tz)
    chosen = page.get_by_label("Time", exact=True).input_value()
    assert chosen.endswith(start.isoformat()), chosen  # the time clicked, already chosen
    page.get_by_role("button", name="Book visit").click()

    page.wait_for_url(f"**/desk/day/{day.isoformat()}/")
    assert "Booked: Integration" in page.get_by_role("status").inner_text()
    visit = Visit.objects.get(patient=avery)
    assert (visit.clinician, visit.start, visit.status) == (
        clinic.therapist,
        start,
        VisitStatus.BOOKED,
    )
    block = page.get_by_role("region", name="Sam Rivers").get_by_role(
        "link", name=re.compile(r"^10:15-11:05 Avery Applewood")
    )
    assert "Integration, booked" in block.inner_text()
    assert "Not confirmed" in block.inner_text()
    # Four rows tall (10:15-11:15: 50 minutes take the fourth quarter hour too).
    assert round(block.bounding_box()["height"] / box["height"]) == 4
    block.click()
    page.wait_for_url(f"**/desk/visits/{visit.pk}/")
    assert page.get_by_role("heading", level=1).inner_text() == "Integration: Avery Applewood"


def tab_to(page, target, limit: int = 300) -> None:  # noqa: F811 (not the fixture)
    """Press Tab until ``target`` (a locator) has the focus."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if target.evaluate("element => element === document.activeElement"):
            return
    raise AssertionError(f"{limit} presses of Tab never reached {target}")


def test_front_desk_books_a_free_quarter_hour_of_the_day_grid_with_the_keyboard_alone(
    page,  # noqa: F811 (the fixture)
    live_server,
    transactional_db,
):
    """Tab, Enter and typing only, from the grid to the visit booked (signing in by keyboard:
    tests/test_browser.py)."""
    clinic = SmallClinic()
    avery = clinic.patient("Avery", "Applewood")
    user = front_desk(password=PASSWORD)
    day = _next_weekday(timezone.localdate(timezone=clinic.clinic.tz), 1)
    _sign_in(page, live_server, user.username)
    page.wait_for_url("**/desk/")
    page.goto(f"{live_server.url}/desk/day/{day.isoformat()}/")

    cell = page.get_by_role("link", name="Book Sam Rivers at 11:30")
    tab_to(page, cell)
    assert cell.inner_text() == "11:30" and cell.get_by_text("11:30").is_visible()  # shown on focus
    page.keyboard.press("Enter")
    page.wait_for_url("**/desk/patients/?*")
    # The search field has the focus on arrival.
    page.wait_for_function("document.activeElement && document.activeElement.id === 'q'")
    page.keyboard.type("Applewood")
    page.keyboard.press("Enter")
    found = page.get_by_role("link", name="Applewood, Avery")
    found.wait_for()
    tab_to(page, found)
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/desk/patients/{avery.pk}/book/?*")

    tab_to(page, page.get_by_label("Visit type"))
    page.keyboard.type("Integration")  # a closed list picks the option typed
    assert page.get_by_label("Visit type").input_value() == str(clinic.integration.pk)
    tab_to(page, page.get_by_role("button", name="Show free times"))
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Book visit").wait_for()
    start = datetime.combine(day, time(11, 30), tzinfo=clinic.clinic.tz)
    assert page.get_by_label("Time", exact=True).input_value().endswith(start.isoformat())
    tab_to(page, page.get_by_role("button", name="Book visit"))
    page.keyboard.press("Enter")

    page.wait_for_url(f"**/desk/day/{day.isoformat()}/")
    assert "Booked: Integration" in page.get_by_role("status").inner_text()
    visit = Visit.objects.get(patient=avery)
    assert (visit.clinician, visit.start, visit.visit_type) == (
        clinic.therapist,
        start,
        clinic.integration,
    )
