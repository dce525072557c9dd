from django.apps import AppConfig
from django.db.models.signals import post_migrate


class WaitlistConfig(AppConfig):
    name = "waitlist"
    verbose_name = "Waitlist"

    def ready(self):
        from notifications import content, webhooks
        from notifications.models import InboundKind, Purpose
        from scheduler.booking import visit_changed, visit_saved
        from waitlist import offers, taking
        from waitlist.schedule import ensure_schedule

        # Inside the booking transaction: the freed time commits with the change.
        visit_saved.connect(offers.on_visit_saved, dispatch_uid="waitlist.freed")
        # After it: the worker makes the offers.
        visit_changed.connect(offers.on_visit_changed, dispatch_uid="waitlist.offer")
        content.composers[Purpose.WAITLIST_OFFER] = offers.composer
        webhooks.reply_handlers[InboundKind.TAKE] = taking.on_take_reply
        post_migrate.connect(ensure_schedule, sender=self, dispatch_uid="waitlist.schedule")
