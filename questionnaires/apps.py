from django.apps import AppConfig


class QuestionnairesConfig(AppConfig):
    name = "questionnaires"
    verbose_name = "Questionnaires"

    def ready(self):
        from notifications import content
        from notifications.models import Purpose
        from questionnaires import asking
        from scheduler.booking import visit_saved

        # Inside the booking transaction: requests and their messages commit
        # or roll back with the visit's change.
        visit_saved.connect(asking.on_visit_saved, dispatch_uid="questionnaires.asking")
        content.composers[Purpose.QUESTIONNAIRE] = asking.composer
        content.composers[Purpose.QUESTIONNAIRE_REMINDER] = asking.composer
