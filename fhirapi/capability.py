"""The CapabilityStatement: exactly what this server does, built from the registry."""

from fhirapi.resources import REGISTRY

FHIR_VERSION = "4.0.1"
SOFTWARE = "KAP scheduler"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


SECURITY = {
    "cors": False,
    "service": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                    "code": "SMART-on-FHIR",
                }
            ]
        }
    ],
    "description": "SMART Backend Services: a client signs a JWT assertion (RS384 or ES384) "
    "with a key it registered, exchanges it at the token URL for a bearer token that lives "
    "minutes, and uses system scopes (docs/fhir.md).",
}


def security(base: str) -> dict:
    """SMART on FHIR security: where a client exchanges its signed assertion for a token."""
    return {
        "extension": [
            {"url": OAUTH_URIS, "extension": [{"url": "token", "valueUri": f"{base}/auth/token"}]}
        ],
        **SECURITY,
    }


def capability_statement(base: str) -> dict:
    resources = []
    for kind in REGISTRY.values():
        entry = {
            "type": kind.name,
            "profile": kind.profile,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [
                {"name": name, "type": param.type, "documentation": param.documentation}
                if param.documentation
                else {"name": name, "type": param.type}
                for name, param in kind.search_params.items()
            ],
        }
        if kind.includes:
            entry["searchInclude"] = list(kind.includes)
        if kind.operations:
            entry["operation"] = kind.operations
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-01",
        "kind": "instance",
        "software": {"name": SOFTWARE},
        "implementation": {"description": f"{SOFTWARE} FHIR API", "url": base},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [{"mode": "server", "security": security(base), "resource": resources}],
    }
