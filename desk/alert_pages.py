"""A safety alert's page: the patient's answers that need a clinician today, who was told, and
its acknowledgement (questionnaires.safety, questionnaires.escalation).

Who sees what: the patient's own clinicians (``SafetyAlertQuerySet.for_clinician``:
on the patient's visits, told of the alert, or the clinical lead) and clinic
admins see the reasons and the answers and may acknowledge; the front desk sees
that the alert exists, when, whom it went to and whether it was acknowledged,
not why; any other clinician gets 403. Every view is in the audit trail, and
so is every acknowledgement (who, when, what was done).

A fixed number of queries whatever the alert (tests/test_safety_pages_queries.py):
the alert, the safety policy, who was told, the audit row, and while it waits
the two that count its opening minutes; for a clinician, their tie to the patient.
"""

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from questionnaires import scoring
from questionnaires.escalation import escalates_at
from questionnaires.models import SafetyAlert
from questionnaires.safety import acknowledge, policy_for
from scheduler import audit
from scheduler.models import AuditAction, Patient
from scheduler.roles import DESK_ROLES, Role, role_required, roles_of, working_clinic


class AcknowledgeForm(forms.Form):
    action_taken = forms.CharField(
        label="What was done",
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text='For example: "Called the patient; safety plan reviewed; seen tomorrow."',
    )

    def clean_action_taken(self):
        # One line in the audit trail's detail, whatever the textarea held.
        return " ".join(self.cleaned_data["action_taken"].split())


def answer_rows(alert: SafetyAlert) -> list[tuple[str, str, int | None]]:
    """(question, answer, points) for every item, as the patient answered it."""
    instrument = alert.response.instrument
    answers = alert.response.answers
    rows = []
    for item in scoring.items(instrument.questionnaire):
        option = item.option(answers.get(item.link_id, ""))
        rows.append(
            (item.text, option.display if option else "Not answered", option and option.points)
        )
    return rows


@require_http_methods(["GET", "POST"])
@role_required(Role.FRONT_DESK, Role.ADMIN, Role.CLINICIAN)
def alert_page(request: HttpRequest, pk: int) -> HttpResponse:
    clinic = working_clinic(request)
    alert = get_object_or_404(
        SafetyAlert.objects.select_related(
            "patient",
            "response__instrument",
            "response__request__visit__visit_type",
            "acknowledged_by",
        ),
        pk=pk,
        patient__in=Patient.objects.seen_at(clinic),
    )
    roles = roles_of(request.user)
    own = Role.CLINICIAN in roles and (
        SafetyAlert.objects.filter(pk=alert.pk).for_clinician(request.user.clinician.pk).exists()
    )
    if not (own or roles & set(DESK_ROLES)):
        raise PermissionDenied("This alert is about another clinician's patient.")
    sees_answers = own or Role.ADMIN in roles
    form = AcknowledgeForm()
    if request.method == "POST":
        if not sees_answers:
            raise PermissionDenied("Only the patient's clinicians and clinic admins acknowledge.")
        form = AcknowledgeForm(request.POST)
        if form.is_valid():
            action_taken = form.cleaned_data["action_taken"]
            with transaction.atomic():
                done = acknowledge(alert, request.user, action_taken)
                if done:
                    audit.record(
                        request,
                        AuditAction.CHANGED_PATIENT,
                        alert.patient,
                        f"acknowledged safety alert {alert.pk}: {action_taken}",
                    )
            if done:
                messages.success(request, "Acknowledged.")
            else:
                messages.error(request, "Someone acknowledged this alert already.")
            return redirect(request.get_full_path())
    policy = policy_for(clinic)
    waiting = alert.acknowledged_at is None and alert.escalated_at is None
    context = {
        "clinic": clinic,
        "tz": clinic.tz,
        "alert": alert,
        "base": "desk/base.html" if roles & set(DESK_ROLES) else "desk/clinician_base.html",
        "is_desk": bool(roles & set(DESK_ROLES)),
        "sees_answers": sees_answers,
        "answers": answer_rows(alert) if sees_answers else [],
        "notices": [
            notice.message
            for notice in alert.notices.select_related("message__clinician").order_by("pk")
        ],
        "policy": policy,
        "escalates_at": escalates_at(alert, policy, clinic) if waiting else None,
        "form": form,
    }
    audit.record(
        request,
        AuditAction.VIEWED_PATIENT,
        alert.patient,
        f"safety alert {alert.pk}" + (" with the answers" if sees_answers else ""),
    )
    return render(request, "desk/alert.html", context)
