from django.apps import AppConfig


class DeskConfig(AppConfig):
    name = "desk"
    verbose_name = "Pages"

    def ready(self):
        # The last app to load: every library has added its log handlers and
        # registered its admin pages by now.
        from django.contrib import admin

        from config.logs import redact_on_every_handler
        from scheduler.admin.base import check_input_of_every_admin

        redact_on_every_handler()
        check_input_of_every_admin(admin.site)
