from django.core.management.base import BaseCommand

from questionnaires.asking import plan_upcoming


class Command(BaseCommand):
    help = (
        "Apply the asking rules as they are now to every visit still to come: ask what they "
        "ask, cancel open requests they no longer ask, plan the messages. Safe to run again."
    )

    def handle(self, *args, **options):
        counts = plan_upcoming()
        self.stdout.write(
            ", ".join(
                f"{counts.get(name, 0)} {name}"
                for name in ("asked", "moved", "cancelled", "messages")
            )
        )
