"""Imports point one way: scheduler at the bottom, plans and notifications on it, desk on top.

Every module of each app is read with ``ast`` (so imports inside functions,
the lazy ones an ``AppConfig.ready`` or a view makes, count too), and each
imported name is resolved to the project app it comes from. ``config`` is
shared by all and imports none of them: the URL configuration names the
apps' URL modules as strings, which Django resolves at startup.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = (
    "config",
    "scheduler",
    "plans",
    "notifications",
    "desk",
    "waitlist",
    "questionnaires",
    "fhirapi",
    "billing",
)

# What each app may import from the others (itself and config always allowed).
ALLOWED = {
    "config": set(),
    "scheduler": set(),
    "plans": {"scheduler"},
    "notifications": {"scheduler"},
    "desk": {"scheduler", "plans", "notifications", "waitlist", "questionnaires", "billing"},
    # Beside the desk, under it: freed times are offered by text (notifications)
    # to patients whose plans allow them (plans); the desk shows its pages.
    "waitlist": {"scheduler", "plans", "notifications"},
    # Beside the waitlist: asked before visits (scheduler, plans' steps), sent by text and
    # email (notifications), alerts to clinicians through the same outbox; the desk shows
    # the pages that answer them.
    "questionnaires": {"scheduler", "plans", "notifications"},
    # Beside the desk, on top: the FHIR API serves what the domain apps keep, books through
    # their rules; nothing imports it (config/urls names its URLs as a string, and
    # seed_demo reaches its demo client through scheduler.demo.demo_seeded).
    "fhirapi": {"scheduler", "plans", "notifications", "questionnaires", "waitlist"},
    # Beside the waitlist: prices plans (plans), reminds of instalments through the
    # outbox (notifications); the desk shows its pages.
    "billing": {"scheduler", "plans", "notifications"},
}


def imported_apps(source: str, module_path: Path, package: str) -> list[tuple[int, str]]:
    """(line, app) for every import of a project app in ``source``, relative ones resolved."""
    found = []
    for node in ast.walk(ast.parse(source, filename=str(module_path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            # from . import x / from ..models import y: inside the same app.
            names = [package] if node.level else [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in APPS:
                found.append((node.lineno, top))
    return found


def modules_of(app: str) -> list[Path]:
    return sorted((ROOT / app).rglob("*.py"))


def wrong_way_imports(app: str) -> list[str]:
    allowed = ALLOWED[app] | {app, "config"}
    if app == "config":
        allowed = {"config"}
    problems = []
    for path in modules_of(app):
        for line, imported in imported_apps(path.read_text(), path, app):
            if imported not in allowed:
                problems.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    return problems


@pytest.mark.parametrize("app", APPS)
def test_app_imports_only_the_layers_below_it(app):
    assert modules_of(app), f"{app} has no modules: is the layout test looking in the right place?"
    assert wrong_way_imports(app) == []


def test_an_import_inside_a_function_counts():
    source = "def ready():\n    from notifications.planning import on_visit_saved\n"
    assert imported_apps(source, Path("scheduler/apps.py"), "scheduler") == [(2, "notifications")]


def test_a_plain_and_a_relative_import_are_resolved():
    source = "import plans.models\nfrom .models import Visit\nfrom django.db import models\n"
    assert imported_apps(source, Path("scheduler/x.py"), "scheduler") == [
        (1, "plans"),
        (2, "scheduler"),
    ]
