from django.apps import AppConfig
from django.db.models.signals import post_migrate


class QuestionnairesConfig(AppConfig):
    name = "questionnaires"
    verbose_name = "Questionnaires"

    def ready(self):
        from notifications import content
        from notifications.models import Purpose
        from questionnaires import escalation, safety
        from questionnaires.signals import response_completed

        # Inside the submitting transaction: the alert commits with the answers.
        response_completed.connect(
            safety.on_response_completed, dispatch_uid="questionnaires.safety"
        )
        content.composers[Purpose.SAFETY_ALERT] = safety.composer
        content.composers[Purpose.SAFETY_ESCALATION] = safety.composer
        post_migrate.connect(
            escalation.ensure_schedule, sender=self, dispatch_uid="questionnaires.escalation"
        )
