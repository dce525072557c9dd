from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self):
        from billing import demo, ledger, payments
        from notifications import content
        from notifications.models import Purpose
        from scheduler.booking import visit_saved
        from scheduler.demo import demo_seeded

        visit_saved.connect(ledger.charge_policy_fee, dispatch_uid="billing-policy-fee")
        visit_saved.connect(payments.plan_reminders, dispatch_uid="billing-instalment-reminders")
        demo_seeded.connect(demo.seed, dispatch_uid="billing-demo")
        content.composers[Purpose.INSTALMENT_DUE] = payments.composer
