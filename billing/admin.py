"""Where a clinic admin sets fees, codes, prices, policies and identifiers.

Estimates given and ledger lines are written by the desk's pages (each audited)
and only read here: an estimate is kept as given, and the account is changed by
lines of its own, never by editing one.
"""

from django.contrib import admin

from billing.models import (
    ClinicBilling,
    ClinicianBilling,
    Diagnosis,
    Fee,
    GoodFaithEstimate,
    LedgerEntry,
    PackagePrice,
    PatientDiscount,
)
from scheduler.admin.base import ModelAdmin


@admin.register(Fee)
class FeeAdmin(ModelAdmin):
    clinic_path = "visit_type__clinic"
    list_display = (
        "visit_type",
        "code",
        "add_on_codes",
        "modifier",
        "units",
        "typically_reimbursable",
    )
    list_filter = ("visit_type__clinic", "typically_reimbursable")


@admin.register(ClinicBilling)
class ClinicBillingAdmin(ModelAdmin):
    clinic_path = "clinic"
    list_display = (
        "clinic",
        "payment_option",
        "instalment_reminders",
        "late_cancellation_fee",
        "no_show_fee",
    )


@admin.register(PackagePrice)
class PackagePriceAdmin(ModelAdmin):
    clinic_path = "protocol__clinic"
    list_display = ("protocol", "doses", "price")


@admin.register(PatientDiscount)
class PatientDiscountAdmin(ModelAdmin):
    clinic_path = "patient__clinic"
    list_display = ("patient", "percent", "reason", "set_by", "set_at")
    raw_id_fields = ("patient",)
    readonly_fields = ("set_by", "set_at")

    def save_model(self, request, obj, form, change):
        obj.set_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(ClinicianBilling)
class ClinicianBillingAdmin(ModelAdmin):
    clinic_path = "clinician__clinic"
    list_display = ("clinician", "npi", "licence", "credentials")


@admin.register(Diagnosis)
class DiagnosisAdmin(ModelAdmin):
    clinic_path = "patient__clinic"
    list_display = ("patient", "code", "description", "entered_by", "entered_at")
    raw_id_fields = ("patient",)


class ReadOnly:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(GoodFaithEstimate)
class GoodFaithEstimateAdmin(ReadOnly, ModelAdmin):
    clinic_path = "patient__clinic"
    list_display = ("patient", "care_plan", "given_at", "how", "due_by", "total", "currency")


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnly, ModelAdmin):
    clinic_path = "patient__clinic"
    list_display = ("patient", "on", "kind", "amount", "currency", "description")
    list_filter = ("kind",)
