"""The GA4 Measurement Protocol, as Google's collection servers take it.

``POST /mp/collect`` answers 204 to every request it receives, malformed or not, with a
wrong ``api_secret`` too (the events are then discarded without a word); ``POST
/debug/mp/collect`` answers 200 ``{"validationMessages": [...]}`` and records nothing. Both
check the same rules here (developers.google.com/analytics/devguides/collection/protocol/
ga4: reference, sending-events, validating-events, uid-data): what GA would reject or
discard is a ``problem`` (a bug in the relay's mapping) and, on the debug path, a
validation message with Google's codes.

With ``gateway=True`` it stands for a gateway in front of Google (``settings.endpoint``
pointed at a private proxy) that refuses a wrong secret with 403; Google itself never does.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .base import Reply, Request, StandIn

COLLECT, DEBUG = "/mp/collect", "/debug/mp/collect"
MAX_BODY = 130_000
MAX_EVENTS = MAX_PARAMS = 25
BACKDATE_MICROS = 72 * 3600 * 1_000_000
TOP = {"client_id", "user_id", "timestamp_micros", "user_properties", "user_data", "consent",
       "non_personalized_ads", "user_location", "ip_override", "device", "user_agent",
       "validation_behavior", "events"}
USER_DATA = {"sha256_email_address", "sha256_phone_number", "address"}
ADDRESS = {"sha256_first_name", "sha256_last_name", "sha256_street", "city", "region",
           "postal_code", "country"}
DEVICE = {"category", "language", "screen_resolution", "operating_system",
          "operating_system_version", "model", "brand", "browser", "browser_version"}
LOCATION = {"city", "region_id", "country_id", "subcontinent_id", "continent_id"}
RESERVED_EVENTS = {"ad_activeview", "ad_click", "ad_exposure", "ad_impression", "ad_query",
                   "adunit_exposure", "app_clear_data", "app_exception", "app_install",
                   "app_remove", "app_store_refund", "app_update", "app_upgrade", "error",
                   "first_open", "first_visit", "in_app_purchase", "notification_dismiss",
                   "notification_foreground", "notification_open", "notification_receive",
                   "os_update", "screen_view", "session_start", "user_engagement"}
RESERVED_PREFIXES = ("_", "firebase_", "ga_", "google_", "gtag.")
PAGE_LIMITS = {"page_location": 1000, "page_referrer": 420, "page_title": 300}
_HEX64 = re.compile(r"[0-9a-f]{64}")
_EMAIL = re.compile(r"[^@\s\"]+@[^@\s\"]+\.[a-z]{2,}", re.IGNORECASE)


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _name_ok(name: Any) -> bool:
    return (isinstance(name, str) and 0 < len(name) <= 40 and name[0].isalpha()
            and all(c.isalnum() or c == "_" for c in name))


class Ga4StandIn(StandIn):
    name = "ga4"

    def __init__(self, measurement_id: str = "G-E2ETEST01", api_secret: str = "e2e-mp-secret-7",
                 *, gateway: bool = False, property_id: str = "424242") -> None:
        self.measurement_id = measurement_id
        self.api_secret = api_secret
        self.gateway = gateway
        self.property_id = property_id
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._tokens: set[str] = set()
        self.user_deletions: list[dict[str, Any]] = []  # submitUserDeletion bodies accepted
        super().__init__()

    # -- the Admin API's user deletion, behind Google's OAuth (a service account) ---------

    def write_service_account_key(self, path: Path) -> Path:
        """A service account's JSON key whose token_uri is this stand-in's token endpoint."""
        pem = self._key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode()
        path.write_text(json.dumps({
            "type": "service_account", "project_id": "e2e", "private_key_id": "e2e-key-1",
            "private_key": pem, "client_email": "relay-forget@e2e.iam.gserviceaccount.com",
            "token_uri": f"{self.endpoint}/token"}))
        return path

    def _token(self, request: Request) -> Reply:
        """The OAuth 2.0 JWT bearer grant: the assertion signed with the service account's
        key (RS256), for this token endpoint, asking for the analytics.edit scope."""
        form = {k: v[-1] for k, v in parse_qs(request.body.decode()).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return Reply.json(400, {"error": "unsupported_grant_type"})
        try:
            head, claims, signature = form["assertion"].split(".")
            self._key.public_key().verify(_unb64(signature), f"{head}.{claims}".encode(),
                                          padding.PKCS1v15(), hashes.SHA256())
            header, body = json.loads(_unb64(head)), json.loads(_unb64(claims))
        except (KeyError, ValueError, InvalidSignature):
            return Reply.json(400, {"error": "invalid_grant", "error_description": "bad JWT"})
        now = time.time()
        if (header.get("alg") != "RS256" or body.get("aud") != f"{self.endpoint}/token"
                or body.get("scope") != "https://www.googleapis.com/auth/analytics.edit"
                or not body.get("iat", 0) - 60 <= now <= body.get("exp", 0)):
            return Reply.json(400, {"error": "invalid_grant", "error_description": "claims"})
        token = f"ya29.e2e-{len(self._tokens) + 1}"
        self._tokens.add(token)
        return Reply.json(200, {"access_token": token, "expires_in": 3599,
                                "token_type": "Bearer"})

    def _submit(self, request: Request) -> Reply:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self._tokens:
            return Reply.json(401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}})
        if request.path != f"/v1alpha/properties/{self.property_id}:submitUserDeletion":
            return Reply.json(403, {"error": {"code": 403, "status": "PERMISSION_DENIED"}})
        body = request.json()
        fields = ("userId", "clientId", "appInstanceId", "userProvidedData")
        if not isinstance(body, dict) or len(body) != 1 or next(iter(body)) not in fields:
            return Reply.json(400, {"error": {"code": 400, "status": "INVALID_ARGUMENT"}})
        self.user_deletions.append(body)
        return Reply.json(200, {"deletionRequestTime": "2026-11-28T12:00:00Z"})

    def check(self, request: Request) -> Reply:
        if request.method == "POST" and request.path == "/token":
            return self._token(request)
        if request.method == "POST" and request.path.startswith("/v1alpha/properties/"):
            return self._submit(request)
        if request.path not in (COLLECT, DEBUG):
            return Reply(404, b"<html>Not Found</html>", (("Content-Type", "text/html"),))
        if request.method != "POST":
            request.problem(f"{request.method}: the Measurement Protocol takes POST only")
            return Reply(405, b"")
        if self.gateway and request.param("api_secret") != self.api_secret:
            return Reply.json(403, {"error": "forbidden: api_secret not accepted"})
        messages: list[dict[str, str]] = []

        def invalid(path: str, code: str, description: str) -> None:
            messages.append({"fieldPath": path, "description": description,
                             "validationCode": code})

        if request.param("measurement_id") != self.measurement_id:
            request.problem("measurement_id is not the stream's: GA discards the events")
        if request.param("api_secret") != self.api_secret:
            request.problem("api_secret is not one of the stream's: GA discards the events")
        if not request.headers.get("content-type", "").startswith("application/json"):
            request.problem("Content-Type is not application/json")
        if len(request.body) >= MAX_BODY:
            invalid("", "VALUE_OUT_OF_BOUNDS", f"body of {len(request.body)} bytes: < 130 kB")
        if _EMAIL.search(request.body.decode(errors="replace")):
            request.problem("an email address in the clear")
        body = request.json()
        if not isinstance(body, dict):
            invalid("", "VALUE_INVALID", "the body is not a JSON object")
        else:
            self._body(body, invalid)
        for m in messages:
            request.problem(f"{m['validationCode']} {m['fieldPath']}: {m['description']}")
        if request.path == DEBUG:
            return Reply.json(200, {"validationMessages": messages})
        if not messages and isinstance(body, dict):
            head = {k: v for k, v in body.items() if k != "events"}
            for ev in body["events"]:
                request.accept({**head, "event": ev})
        return Reply(204, b"", ())

    # -- the rules ----------------------------------------------------------------------

    def _body(self, body: dict[str, Any], invalid: Any) -> None:
        for key in set(body) - TOP:
            invalid(key, "VALUE_INVALID", f"unknown field {key}")
        if not isinstance(body.get("client_id"), str) or not body["client_id"]:
            invalid("client_id", "VALUE_REQUIRED", "client_id is required for web streams")
        if "user_id" in body and (not isinstance(body["user_id"], str)
                                  or len(body["user_id"]) > 256):
            invalid("user_id", "VALUE_INVALID", "user_id: a string of at most 256 characters")
        now = time.time() * 1_000_000
        self._time(body.get("timestamp_micros"), "timestamp_micros", now, invalid)
        consent = body.get("consent")
        if consent is not None and (not isinstance(consent, dict) or not set(consent) <= {
                "ad_user_data", "ad_personalization"} or not set(consent.values()) <= {
                "GRANTED", "DENIED"}):
            invalid("consent", "VALUE_INVALID", "consent: ad_user_data, ad_personalization "
                    "GRANTED or DENIED")
        if "user_data" in body:
            self._user_data(body, invalid)
        if "ip_override" in body:
            try:
                ipaddress.ip_address(body["ip_override"])
            except (ValueError, TypeError):
                invalid("ip_override", "VALUE_INVALID", "ip_override is not an IP address")
        for key, allowed in (("device", DEVICE), ("user_location", LOCATION)):
            value = body.get(key)
            if value is not None and (not isinstance(value, dict) or not set(value) <= allowed):
                invalid(key, "VALUE_INVALID", f"{key}: unknown fields")
        events = body.get("events")
        if not isinstance(events, list) or not events:
            invalid("events", "VALUE_REQUIRED", "events: at least one event")
            return
        if len(events) > MAX_EVENTS:
            invalid("events", "EXCEEDED_MAX_ENTITIES", f"{len(events)} events: at most 25")
        for i, ev in enumerate(events):
            self._event(i, ev, now, invalid)

    @staticmethod
    def _time(value: Any, path: str, now: float, invalid: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            invalid(path, "VALUE_INVALID", f"{path}: microseconds as an integer")
        elif not now - BACKDATE_MICROS <= value <= now + 60_000_000:
            invalid(path, "VALUE_OUT_OF_BOUNDS", f"{path}: not within the last 72 hours")

    @staticmethod
    def _user_data(body: dict[str, Any], invalid: Any) -> None:
        data = body["user_data"]
        if "user_id" not in body:
            invalid("user_data", "VALUE_REQUIRED", "user_data requires user_id")
        if not isinstance(data, dict) or not set(data) <= USER_DATA:
            invalid("user_data", "VALUE_INVALID", "user_data: unknown fields")
            return
        for key in ("sha256_email_address", "sha256_phone_number"):
            values = data.get(key, [])
            if not isinstance(values, list) or not all(
                    isinstance(v, str) and _HEX64.fullmatch(v) for v in values):
                invalid(f"user_data.{key}", "VALUE_INVALID", "not lowercase SHA-256 hex")
        for i, address in enumerate(data.get("address", [])):
            where = f"user_data.address[{i}]"
            if not isinstance(address, dict) or not set(address) <= ADDRESS:
                invalid(where, "VALUE_INVALID", "unknown fields")
                continue
            for key, value in address.items():
                bad = (not isinstance(value, str) or (key.startswith("sha256_")
                                                      and not _HEX64.fullmatch(value))
                       or (key in ("city", "region") and (value != value.lower() or any(
                           c.isdigit() for c in value)))
                       or (key == "country" and not re.fullmatch(r"[A-Z]{2}", value)))
                if bad:
                    invalid(f"{where}.{key}", "VALUE_INVALID", "not normalized as Google says")

    @staticmethod
    def _event(i: int, ev: Any, now: float, invalid: Any) -> None:
        where = f"events[{i}]"
        if not isinstance(ev, dict) or not set(ev) <= {"name", "params", "timestamp_micros"}:
            invalid(where, "VALUE_INVALID", "an event has name, params, timestamp_micros")
            return
        name = ev.get("name")
        if not _name_ok(name):
            invalid(f"{where}.name", "NAME_INVALID", f"Event at index: [{i}] has invalid name "
                    f"[{name}].")
        elif name in RESERVED_EVENTS or str(name).startswith(RESERVED_PREFIXES):
            invalid(f"{where}.name", "NAME_RESERVED", f"[{name}] is reserved.")
        Ga4StandIn._time(ev.get("timestamp_micros"), f"{where}.timestamp_micros", now, invalid)
        params = ev.get("params", {})
        if not isinstance(params, dict):
            invalid(f"{where}.params", "VALUE_INVALID", "params is an object")
            return
        if len(params) > MAX_PARAMS:
            invalid(f"{where}.params", "EXCEEDED_MAX_ENTITIES", f"{len(params)} params: 25")
        for key, value in params.items():
            path = f"{where}.params.{key}"
            if not _name_ok(key) or key.startswith(RESERVED_PREFIXES):
                invalid(path, "NAME_INVALID", f"invalid parameter name [{key}]")
            if key == "items":
                if not isinstance(value, list) or len(value) > 200 or not all(
                        isinstance(it, dict) and all(_name_ok(k) for k in it) for it in value):
                    invalid(path, "VALUE_INVALID", "items: at most 200 objects")
            elif isinstance(value, str):
                if len(value) > PAGE_LIMITS.get(key, 100):
                    invalid(path, "VALUE_OUT_OF_BOUNDS", "a parameter value is too long")
            elif isinstance(value, bool) or not isinstance(value, int | float):
                invalid(path, "VALUE_INVALID", "a parameter value is a string or a number")
        if "session_id" in params and not re.fullmatch(r"[0-9]+", str(params["session_id"])):
            invalid(f"{where}.params.session_id", "VALUE_INVALID", "session_id: digits")
        if name in ("purchase", "refund") and not params.get("transaction_id"):
            invalid(f"{where}.params.transaction_id", "VALUE_REQUIRED",
                    "transaction_id is required")
        if "currency" in params and not re.fullmatch(r"[A-Z]{3}", str(params["currency"])):
            invalid(f"{where}.params.currency", "VALUE_INVALID", "currency: ISO 4217")
