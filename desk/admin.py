"""The web app's additions to the admin: exporting a patient's data.

The export reads every layer (visits, plans, messages), so it lives here, and
the patient admin with the export action is this app's own subclass of
scheduler's, registered in its place.
"""

from django.contrib import admin, messages
from django.http import HttpResponse

from desk.export import export_json
from scheduler.admin.core import PatientAdmin
from scheduler.models import Patient
from scheduler.roles import Role, roles_of


class PatientAdminWithExport(PatientAdmin):
    actions = [*(PatientAdmin.actions or []), "export_patient_data"]

    @admin.action(description="Export the patient's data (JSON)")
    def export_patient_data(self, request, queryset):
        """A patient's data for their access request; clinic admins only, one patient at a time."""
        if Role.ADMIN not in roles_of(request.user):
            self.message_user(request, "Only clinic admins export patient data.", messages.ERROR)
            return None
        chosen = list(queryset[:2])
        if len(chosen) != 1:
            self.message_user(request, "Choose exactly one patient to export.", messages.ERROR)
            return None
        response = HttpResponse(
            export_json(chosen[0], request=request, by="admin action"),
            content_type="application/json; charset=utf-8",
        )
        response["Content-Disposition"] = f'attachment; filename="patient-{chosen[0].pk}.json"'
        response["Cache-Control"] = "no-store"
        return response


admin.site.unregister(Patient)
admin.site.register(Patient, PatientAdminWithExport)
