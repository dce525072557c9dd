"""Admin pages for clinic staff, one module a subject.

Importing the modules registers their pages with ``admin.site`` (Django's
autodiscovery imports this package). ``base`` holds what they share.
"""

from scheduler.admin import audit, calendars, core, visits

__all__ = ["audit", "calendars", "core", "visits"]
