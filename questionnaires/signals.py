from django.dispatch import Signal

# Sent inside the transaction that submits a response, once it is scored and
# stored as completed: ``response`` (a QuestionnaireResponse). The safety path
# listens, so an alert commits with the answers that raised it.
response_completed = Signal()
