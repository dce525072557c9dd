"""Response headers Django does not set itself (Django 5.2 has no CSP support)."""

from django.conf import settings


class ContentSecurityPolicyMiddleware:
    """Content-Security-Policy on every response: own scripts and styles only, no framing.

    The templates have no inline scripts, styles or handlers (tests check), so
    the policy needs no 'unsafe-inline'; the admin's own static files are "self" too.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        return response
