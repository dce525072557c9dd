"""Twilio's two webhooks: delivery status and inbound texts.

Both accept only POSTs signed by Twilio with the account's auth token
(``X-Twilio-Signature``), checked against the public URL (SITE_URL + path), not
the one the request arrived at: behind a proxy or load balancer the two differ
and the signature covers the public one. CSRF does not apply (Twilio has no
session); the signature is the authentication.
"""

from functools import wraps

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from notifications.webhooks import handle_inbound, record_status


def public_url(request: HttpRequest) -> str:
    query = request.META.get("QUERY_STRING", "")
    return settings.SITE_URL + request.path_info + (f"?{query}" if query else "")


def refusal(request: HttpRequest) -> HttpResponse | None:
    """A response refusing the request, or None when it is a genuine Twilio webhook."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return HttpResponse("Bad length.", status=400)
    # Twilio's webhooks are a few kilobytes; anything bigger is not Twilio.
    if length > settings.TWILIO_WEBHOOK_MAX_BYTES:
        return HttpResponse("Too large.", status=413)
    signature = request.headers.get("X-Twilio-Signature", "")
    token = settings.TWILIO_AUTH_TOKEN
    if not (token and signature):
        return HttpResponse("Not signed.", status=403)
    if not RequestValidator(token).validate(public_url(request), request.POST, signature):
        return HttpResponse("Bad signature.", status=403)
    return None


def twilio_webhook(view):
    """Only POSTs that Twilio signed reach ``view``; everything else gets ``refusal``'s answer."""

    @csrf_exempt
    @require_POST
    @wraps(view)
    def checked(request: HttpRequest) -> HttpResponse:
        return refusal(request) or view(request)

    return checked


@twilio_webhook
def status_callback(request: HttpRequest) -> HttpResponse:
    record_status(
        request.POST.get("MessageSid", ""),
        request.POST.get("MessageStatus") or request.POST.get("SmsStatus", ""),
        request.POST.get("ErrorCode", ""),
        request.GET.get("m", ""),
    )
    return HttpResponse(status=204)


@twilio_webhook
def inbound(request: HttpRequest) -> HttpResponse:
    if not request.POST.get("MessageSid"):
        return HttpResponse("No MessageSid.", status=400)
    # A "C" reply confirms a visit: the audit trail names the channel, not "anonymous".
    request.audit_actor = "text reply"
    message = handle_inbound(
        request.POST["MessageSid"],
        request.POST.get("From", ""),
        request.POST.get("Body", ""),
        request.POST.get("To", ""),
    )
    twiml = MessagingResponse()
    if message.reply:
        twiml.message(message.reply)
    return HttpResponse(str(twiml), content_type="text/xml; charset=utf-8")
