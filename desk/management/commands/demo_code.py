"""``manage.py demo_code NAME``: the code a demo account's authenticator app would show now.

Only for the accounts seed_demo made, whose authenticator key is the demo's
published one (desk/demo.py): for any other account it prints nothing and fails.
"""

from django.core.management.base import BaseCommand, CommandError
from django_otp.oath import TOTP

from desk.demo import demo_device


class Command(BaseCommand):
    help = "Print the current second-factor code of a demo account (seed_demo's accounts only)."

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, username: str, **options):
        device = demo_device(username)
        if device is None:
            raise CommandError(
                f"{username!r} has no demo authenticator: only seed_demo's clinic admins "
                "and clinicians have one."
            )
        code = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
        self.stdout.write(f"{code.token():0{device.digits}d}")
