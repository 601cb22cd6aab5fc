"""The original iOS app's API (polaris.services.expresscan) in OpenAPI terms, published in
the customer document beside our own /api/v1 routes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from polaris.services.expresscan import (
    API,
    CALLBACK,
    CHALLENGE,
    REGISTER_PAGE,
    ErrorOut,
    HeartbeatBody,
    MeOut,
    OkOut,
    PushTokenBody,
    RegisterBody,
    RegisterOut,
    StateOut,
)

TAG = "iOS app (original API)"
SECURITY_SCHEME = "deviceToken"


_DEFS: dict[str, Any] = {}  # nested models, published under components/schemas


def _schema(model: type[BaseModel], mode: str = "serialization") -> dict[str, Any]:
    schema = model.model_json_schema(mode=mode, ref_template="#/components/schemas/{model}")  # type: ignore[arg-type]
    _DEFS.update(schema.pop("$defs", {}))
    return schema


def _answers(ok: type[BaseModel] | None, *errors: int) -> dict[str, Any]:
    text = {400: "Bad request", 401: "No valid device token", 403: "Another device's id",
            404: "Not a device id", 410: "The device was signed out"}
    out: dict[str, Any] = {}
    if ok is not None:
        out["200"] = {"description": "OK", "content": {"application/json": {"schema": _schema(ok)}}}
    for code in errors:
        out[str(code)] = {"description": text[code],
                          "content": {"application/json": {"schema": _schema(ErrorOut)}}}
    return out


def openapi_paths() -> dict[str, Any]:
    device = [{SECURITY_SCHEME: []}]
    device_id = [{"name": "deviceId", "in": "path", "required": True,
                  "schema": {"type": "string", "format": "uuid"}}]

    def body(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
        return {"required": required, "content": {"application/json": {"schema": _schema(model, "validation")}}}

    return {
        REGISTER_PAGE: {"get": {
            "operationId": "expresscan_register_page", "tags": [TAG], "security": [{"cookieAuth": []}],
            "summary": "Browser step of registering the app: a staff session mints a one-time code",
            "description": "Answers an HTML page that sends the browser to "
                           f"{CALLBACK}?code=<one-time code> (valid 60 seconds, once).",
            "parameters": [
                {"name": "codeChallenge", "in": "query", "required": True,
                 "schema": {"type": "string", "pattern": CHALLENGE.pattern},
                 "description": "base64url(SHA-256(codeVerifier)), no padding"},
                {"name": "label", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 120}},
            ],
            "responses": {str(c): {"description": d, "content": {"text/html": {"schema": {"type": "string"}}}}
                          for c, d in ((200, "The redirect page"), (400, "No valid codeChallenge"),
                                       (401, "Not signed in as staff"))},
        }},
        API + "/register": {"post": {
            "operationId": "expresscan_register", "tags": [TAG], "security": [],
            "summary": "Exchange the one-time code and PKCE verifier for the device's token and secret",
            "requestBody": body(RegisterBody), "responses": _answers(RegisterOut, 400),
        }},
        API + "/me": {"get": {
            "operationId": "expresscan_me", "tags": [TAG], "security": device,
            "summary": "This device and its owner (the app checks its token with this)",
            "responses": _answers(MeOut, 401, 410),
        }},
        API + "/me/state": {"get": {
            "operationId": "expresscan_state", "tags": [TAG], "security": device,
            "summary": "This device's state envelope (capabilities, owner, push token, connectivity)",
            "responses": _answers(StateOut, 401),
        }},
        API + "/heartbeat": {"post": {
            "operationId": "expresscan_heartbeat", "tags": [TAG], "security": device,
            "summary": "Liveness ping, optionally with battery and network state",
            "requestBody": body(HeartbeatBody, required=False), "responses": _answers(OkOut, 400, 401, 410),
        }},
        API + "/{deviceId}/push-token": {"put": {
            "operationId": "expresscan_push_token", "tags": [TAG], "security": device, "parameters": device_id,
            "summary": "Set this device's APNs token", "requestBody": body(PushTokenBody),
            "responses": _answers(OkOut, 400, 401, 403, 404, 410),
        }},
        API + "/{deviceId}": {"delete": {
            "operationId": "expresscan_deregister", "tags": [TAG], "security": device, "parameters": device_id,
            "summary": "Sign this device out (its token stops working, no more pushes)",
            "responses": _answers(OkOut, 401, 403, 404, 410),
        }},
    }


def add_to_document(doc: dict[str, Any]) -> None:
    doc["paths"].update(openapi_paths())
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in _DEFS.items():
        if name in schemas and schemas[name] != schema:
            raise RuntimeError(f"two OpenAPI schemas named {name}")
        schemas[name] = schema
    doc.setdefault("components", {}).setdefault("securitySchemes", {})[SECURITY_SCHEME] = {
        "type": "http", "scheme": "bearer",
        "description": "Authorization: Bearer dev_... (the deviceToken from POST /api/devices/register)",
    }
