"""What the logs say about routine refusals: one line, no traceback."""

import logging

from django.test import Client

from tests.conftest import SmallClinic
from tests.page_helpers import sign_in_verified


def test_a_refused_page_is_one_line_in_the_log_without_a_traceback(db, caplog):
    clinic = SmallClinic()
    client = Client()
    sign_in_verified(client, clinic.therapist.user)  # a clinician on a desk page: 403
    with caplog.at_level(logging.INFO):
        response = client.get("/desk/")
    assert response.status_code == 403
    refusals = [r for r in caplog.records if r.name == "django.request"]
    assert len(refusals) == 1
    (record,) = refusals
    assert record.getMessage() == "Forbidden (Permission denied): /desk/"
    assert record.exc_info is None
    assert "Traceback" not in caplog.text
