from django.apps import AppConfig
from django.db.models.signals import post_migrate


class QuestionnairesConfig(AppConfig):
    name = "questionnaires"
    verbose_name = "Questionnaires"

    def ready(self):
        from notifications import content
        from notifications.models import Purpose
        from questionnaires import asking, escalation, safety
        from questionnaires.signals import response_completed
        from scheduler.booking import visit_saved

        # Inside the booking transaction: requests and their messages commit
        # or roll back with the visit's change.
        visit_saved.connect(asking.on_visit_saved, dispatch_uid="questionnaires.asking")
        content.composers[Purpose.QUESTIONNAIRE] = asking.composer
        content.composers[Purpose.QUESTIONNAIRE_REMINDER] = asking.composer

        # Inside the submitting transaction: the alert commits with the answers.
        response_completed.connect(
            safety.on_response_completed, dispatch_uid="questionnaires.safety"
        )
        content.composers[Purpose.SAFETY_ALERT] = safety.composer
        content.composers[Purpose.SAFETY_ESCALATION] = safety.composer
        post_migrate.connect(
            escalation.ensure_schedule, sender=self, dispatch_uid="questionnaires.escalation"
        )
