"""The staff header's clinic switcher, shown to users who work in more than one clinic."""

from django import template

from scheduler.roles import access_of

register = template.Library()


@register.inclusion_tag("desk/_clinic_switcher.html", takes_context=True)
def clinic_switcher(context) -> dict:
    request = context["request"]
    access = access_of(request.user)  # already read for the page's role check
    return {
        "clinics": access.clinics if len(access.clinics) > 1 else (),
        "chosen": access.clinic,
        "here": request.get_full_path(),
        "csrf_token": context.get("csrf_token"),
    }
