"""``ga4``'s deletion (``relay forget``): the Admin API's ``submitUserDeletion``, authorized
as a Google service account. Pure: the key is read through ``ForgetContext.read_file``,
the time comes from it too.

The Measurement Protocol's ``api_secret`` cannot delete anything: the Admin API takes
OAuth 2.0 with the scope ``analytics.edit``. ``deletion: {property_id, credentials}`` names
the GA4 property (its number, not the ``G-`` measurement id) and the JSON key of a service
account added to the property with the Editor role. The relay signs the service account's
JWT (RS256) and trades it for an access token (the OAuth 2.0 JWT bearer grant), then::

    POST https://analyticsadmin.googleapis.com/v1alpha/properties/123:submitUserDeletion
    Authorization: Bearer <access token>
    {"userId": "u_42"}                 # or {"userProvidedData": "ann@example.com"}
    -> 200 {"deletionRequestTime": "2026-11-28T12:00:00Z"}
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from relay.destinations import deletion as d
from relay.destinations.base import parse_endpoint
from relay.destinations.google_data import GMAIL_DOMAINS, phone_e164
from relay.rules.fields import BAD_VALUE, At
from relay.types import Call, Deletion, ForgetContext, Outcome, Person
from relay.version import __version__

ADMIN_API = "https://analyticsadmin.googleapis.com"
TOKEN_URI = "https://oauth2.googleapis.com/token"
SCOPE = "https://www.googleapis.com/auth/analytics.edit"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_SECONDS = 3600
USER_AGENT = f"relay/{__version__}"
MANUAL = ("in Google Analytics, Admin > Data collection and modification > Data deletion"
          " requests: or the Admin API's properties.submitUserDeletion with the user id")


@dataclass(frozen=True, slots=True)
class Ga4Deletion:
    """``deletion:``: the property number and a service account's JSON key file."""

    property_id: str
    credentials: str  # a path
    endpoint: str = ADMIN_API


def parse(at: At) -> Ga4Deletion | None:
    if at.mapping(allowed=("property_id", "credentials", "endpoint"),
                  required=("property_id", "credentials")) is None:
        return None
    prop_at = at.get("property_id")
    prop = prop_at.string()
    if prop is not None and not prop.isdigit():
        prop_at.error(BAD_VALUE, "a GA4 property id is a number (not the G- measurement id)",
                      "Admin > Property details shows it")
        prop = None
    credentials = at.get("credentials").string()
    endpoint = parse_endpoint(at.get("endpoint"), ADMIN_API)
    if prop is None or credentials is None:
        return None
    return Ga4Deletion(prop, credentials, endpoint)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def assertion(key: dict[str, Any], now: float) -> str:
    """The service account's signed JWT asking for an ``analytics.edit`` token."""
    header = {"alg": "RS256", "typ": "JWT"}
    if isinstance(key.get("private_key_id"), str):
        header["kid"] = key["private_key_id"]
    claims = {"iss": key["client_email"], "scope": SCOPE,
              "aud": key.get("token_uri") or TOKEN_URI,
              "iat": int(now), "exp": int(now) + TOKEN_SECONDS}
    signing = f"{_b64(orjson.dumps(header))}.{_b64(orjson.dumps(claims))}"
    private = serialization.load_pem_private_key(key["private_key"].encode(), password=None)
    if not isinstance(private, rsa.RSAPrivateKey):
        raise ValueError("the key is not an RSA key")
    signature = private.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing}.{_b64(signature)}"


def user_field(person: Person) -> tuple[str, str] | None:
    """What GA4 is asked to delete: ``userId`` (the ``user_id`` the relay sends, from
    ``user.id``), or ``userProvidedData`` (one email or phone, normalized as Google asks:
    lowercase, no spaces, no dots before the @ of gmail.com; a phone as + and digits)."""
    if "id" in person.given:
        uid = d.user_id(person)
        return ("userId", uid) if uid is not None else None
    email = person.given.get("email")
    if email is not None:
        text = "".join(email.split()).lower()
        local, at, domain = text.rpartition("@")
        if not at or not local:
            return None
        if domain in GMAIL_DOMAINS:
            local = local.replace(".", "")
        return "userProvidedData", f"{local}@{domain}"
    phone = phone_e164(person.given.get("phone"))
    return ("userProvidedData", phone) if phone is not None else None


def plan(person: Person, settings: Any, deletion: Ga4Deletion | None,
         ctx: ForgetContext) -> Outcome | Call:
    field = user_field(person)
    if field is None:
        return d.not_keyed("GA4", person, "user_id (user.id)")
    if deletion is None:
        return d.manual(MANUAL, "property_id, credentials")
    try:
        key = orjson.loads(ctx.read_file(deletion.credentials))
        signed = assertion(key, ctx.now)
    except OSError as exc:
        return Outcome("failed", f"cannot read deletion.credentials: {exc.strerror or exc}")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return Outcome("failed", "deletion.credentials is not a service account's JSON key"
                       f" with an RSA private_key and client_email ({type(exc).__name__})")
    token_uri = key.get("token_uri") or TOKEN_URI
    grant = httpx.Request("POST", token_uri, data={"grant_type": JWT_GRANT, "assertion": signed},
                          headers={"User-Agent": USER_AGENT})
    url = f"{deletion.endpoint}/v1alpha/properties/{deletion.property_id}:submitUserDeletion"
    body = orjson.dumps(dict([field]))

    def granted(response: httpx.Response) -> Outcome | Call:
        token = d.json_body(response)
        access = token.get("access_token") if isinstance(token, dict) else None
        if response.status_code != 200 or not isinstance(access, str):
            return d.failed(response, "the service account of deletion.credentials was"
                            " refused a token")
        return Call(httpx.Request("POST", url, content=body, headers={
            "Authorization": f"Bearer {access}", "Content-Type": "application/json",
            "User-Agent": USER_AGENT}), submitted)

    return Call(grant, granted)


def submitted(response: httpx.Response) -> Outcome:
    answer = d.json_body(response)
    when = answer.get("deletionRequestTime") if isinstance(answer, dict) else None
    if response.status_code != 200 or not isinstance(when, str):
        return d.failed(response, "the service account needs the Editor role on the"
                        " property, and deletion.property_id must be the property's number")
    return Outcome("requested", f"GA4 deletes the user's data received up to {when}")


DELETION = Deletion(parse, plan, "the Admin API's submitUserDeletion (service account)")
