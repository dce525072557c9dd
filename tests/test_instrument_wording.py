"""PHQ-9 and GAD-7 as published: each item's words, the answers and their points, the bands.

The wording is checked against the Pfizer forms (phqscreeners.com) and the papers that
validated them (docs/questionnaires.md gives the sources); a change to the JSON that drifts
from them fails here.
"""

import copy
import importlib

from django.apps import apps

from questionnaires.models import Instrument
from questionnaires.scoring import items, stem

PHQ9 = [
    "Little interest or pleasure in doing things",
    "Feeling down, depressed, or hopeless",
    "Trouble falling or staying asleep, or sleeping too much",
    "Feeling tired or having little energy",
    "Poor appetite or overeating",
    "Feeling bad about yourself — or that you are a failure or have let yourself or your "
    "family down",
    "Trouble concentrating on things, such as reading the newspaper or watching television",
    "Moving or speaking so slowly that other people could have noticed? Or the opposite — "
    "being so fidgety or restless that you have been moving around a lot more than usual",
    "Thoughts that you would be better off dead or of hurting yourself in some way",
]
GAD7 = [
    "Feeling nervous, anxious, or on edge",
    "Not being able to stop or control worrying",
    "Worrying too much about different things",
    "Trouble relaxing",
    "Being so restless that it is hard to sit still",
    "Becoming easily annoyed or irritable",
    "Feeling afraid, as if something awful might happen",
]
DIFFICULTY = (
    "If you checked off any problems, how difficult have these problems made it for you to do "
    "your work, take care of things at home, or get along with other people?"
)
FREQUENCY = [
    ("Not at all", 0),
    ("Several days", 1),
    ("More than half the days", 2),
    ("Nearly every day", 3),
]


def _current(code: str) -> Instrument:
    return Instrument.objects.filter(code=code, is_active=True).get()


def test_phq9_items_answers_and_bands_are_the_published_ones(db):
    phq = _current("phq-9")
    found = items(phq.questionnaire)
    assert stem(phq.questionnaire) == (
        "Over the last 2 weeks, how often have you been bothered by any of the following problems?"
    )
    assert [item.text for item in found] == [*PHQ9, DIFFICULTY]
    for item in found[:9]:
        assert [(o.display, o.points) for o in item.options] == FREQUENCY
    assert [o.points for o in found[9].options] == [None] * 4  # not scored
    assert [(b["min"], b["max"]) for b in phq.scoring["bands"]] == [
        (0, 4),
        (5, 9),
        (10, 14),
        (15, 19),
        (20, 27),
    ]
    assert phq.scoring["safety"][0]["linkId"] == found[8].link_id == "44260-8"


def test_gad7_items_answers_and_bands_are_the_published_ones(db):
    gad = _current("gad-7")
    found = items(gad.questionnaire)
    assert stem(gad.questionnaire) == (
        "Over the last 2 weeks, how often have you been bothered by the following problems?"
    )
    assert [item.text for item in found] == [*GAD7, DIFFICULTY]
    for item in found[:7]:
        assert [(o.display, o.points) for o in item.options] == FREQUENCY
    assert [(b["min"], b["max"]) for b in gad.scoring["bands"]] == [
        (0, 4),
        (5, 9),
        (10, 14),
        (15, 21),
    ]


def test_a_database_with_the_earlier_gad7_wording_gets_the_published_one_as_a_new_version(db):
    migration = importlib.import_module("questionnaires.migrations.0004_gad7_published_wording")
    published = _current("gad-7")
    earlier = copy.deepcopy(published.questionnaire)
    earlier["item"][1]["text"] = "Feeling nervous, anxious or on edge"
    published.delete()
    old = Instrument.objects.create(
        code="gad-7",
        version="1.0.0",
        short_name="GAD-7",
        title=published.title,
        questionnaire=earlier,
        scoring=published.scoring,
        source=published.source,
    )
    migration.add_version(apps, None)
    old.refresh_from_db()
    assert not old.is_active and old.questionnaire == earlier  # kept as answered
    assert _current("gad-7").version == "1.0.1"
    assert items(_current("gad-7").questionnaire)[0].text == GAD7[0]
