"""Admin pages for clinic staff, one module a subject.

Importing the modules registers their pages with ``admin.site`` (Django's
autodiscovery imports this package). ``base`` holds what they share; other
apps' admins take the clinic time-zone, calendar-dates and audit mixins from here.
"""

from scheduler.admin import audit, calendars, core, visits
from scheduler.admin.base import (
    AuditedMixin,
    CalendarDatesMixin,
    ClinicTimeMixin,
    ClinicZoneMixin,
    ModelAdmin,
    ReadOnlyMixin,
    StackedInline,
    TabularInline,
)

__all__ = [
    "AuditedMixin",
    "CalendarDatesMixin",
    "ClinicTimeMixin",
    "ClinicZoneMixin",
    "ModelAdmin",
    "ReadOnlyMixin",
    "StackedInline",
    "TabularInline",
    "audit",
    "calendars",
    "core",
    "visits",
]
