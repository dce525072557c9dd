from django.apps import AppConfig


class DeskConfig(AppConfig):
    name = "desk"
    verbose_name = "Pages"

    def ready(self):
        # The last of the project's apps to load: every library has added its log handlers by now.
        from config.logs import redact_on_every_handler

        redact_on_every_handler()
