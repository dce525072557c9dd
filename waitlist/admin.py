from django.contrib import admin

from waitlist.models import FreedSlot, Offer, WaitlistEntry


class OfferInline(admin.TabularInline):
    model = Offer
    extra = 0
    fields = ("slot", "sent_at", "expires_at", "outcome", "answered_at", "answered_by", "note")
    readonly_fields = fields
    can_delete = False

    def get_queryset(self, request):  # each row names its freed time's visit type and clinic
        return super().get_queryset(request).select_related("slot__visit_type", "slot__clinic")


@admin.register(WaitlistEntry)
class WaitlistEntryAdmin(admin.ModelAdmin):
    list_display = ("patient", "wanted", "earliest", "latest", "priority", "status", "created_at")
    list_filter = ("status", "priority", "visit_type")
    search_fields = ("patient__first_name", "patient__last_name")
    raw_id_fields = ("patient", "gives_up", "booked_visit")
    inlines = [OfferInline]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "step":  # a step without a name is called by its visit type
            kwargs["queryset"] = db_field.related_model.objects.select_related("visit_type")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class WrittenByTheSystem:
    """Freed times and offers are recorded by bookings and the worker: read here, not written."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(FreedSlot)
class FreedSlotAdmin(WrittenByTheSystem, admin.ModelAdmin):
    list_display = ("start", "visit_type", "clinician", "change", "status", "freed_at")
    list_filter = ("status", "change")
    raw_id_fields = ("visit",)
    inlines = [OfferInline]


@admin.register(Offer)
class OfferAdmin(WrittenByTheSystem, admin.ModelAdmin):
    list_display = ("patient", "slot", "sent_at", "expires_at", "outcome", "answered_by")
    list_filter = ("outcome",)
    raw_id_fields = ("slot", "entry", "patient", "visit")
