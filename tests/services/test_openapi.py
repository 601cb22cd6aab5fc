"""The OpenAPI document: valid 3.1, served without auth, describing every admin route;
and a schema-driven sweep of the admin API (schemathesis + hypothesis) with no 5xx."""

from __future__ import annotations

import asyncio
import os

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from polaris.db.repos import charge_boxes, customers, id_tags

DOC = "/api/admin/v1/openapi.json"
# Browser pages and streams documented elsewhere (HTML, SSE), and the document itself.
UNDOCUMENTED = {
    "/api/admin/v1/openapi.json",
    "/api/admin/v1/events",
    "/api/admin/v1/auth/oidc/login",
    "/api/admin/v1/auth/oidc/callback",
    "/api/admin/v1/auth/oidc/done",
    "/api/admin/v1/auth/device/verify",
    "/api/admin/v1/auth/password-reset/{token}",
}


async def test_document_is_valid_openapi_and_public(api, web_app):
    resp = await api.get(DOC)
    assert resp.status == 200, "served without auth"
    doc = await resp.json()
    assert doc["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(doc).validate()
    assert all(path.startswith("/api/admin/v1/") for path in doc["paths"]), "absolute from the host root"

    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    routed = set()
    for route in web_app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if path and path.startswith("/api/admin/v1/") and route.method != "HEAD":
            routed.add((route.method, path.replace(r"{id:\d+}", "{id}").replace(r"{token_id:\d+}", "{token_id}")))
    missing = {r for r in routed if r[1] not in UNDOCUMENTED} - documented
    assert not missing, f"routes without documentation: {sorted(missing)}"

    # Every reference resolves; every operation documents its errors with the one error shape.
    schemas = doc["components"]["schemas"]
    text = str(doc)
    for ref in {part.split("'")[0] for part in text.split("#/components/schemas/")[1:]}:
        assert ref in schemas, ref
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if op.get("security") != []:
                assert {"401", "403"} <= set(op["responses"]), (method, path)
            for status, r in op["responses"].items():
                if int(status) >= 400:
                    assert r["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}


async def test_operator_view_of_the_document_matches_roles(api, operator):
    doc = await (await api.get(DOC)).json()
    admin_only = [p for p, ops in doc["paths"].items() if p.startswith("/api/admin/v1/users")]
    assert admin_only
    for path in admin_only:
        resp = await api.get(path.replace("{id}", "1"), headers=operator.headers)
        assert resp.status in (403, 405)


# Operations the sweep leaves out: they would sign the sweep itself out.
SKIP = {("POST", "/api/admin/v1/auth/logout"), ("DELETE", "/api/admin/v1/auth/tokens/{token_id}")}
# Examples per operation; raise it for a deeper run (POLARIS_SWEEP_EXAMPLES=200 make test ...).
EXAMPLES = int(os.environ.get("POLARIS_SWEEP_EXAMPLES", "12"))


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
async def test_schema_driven_sweep_has_no_server_errors(command_api, aiohttp_server, web_app, pool, make_user):
    server = await aiohttp_server(web_app)
    base = str(server.make_url("")).rstrip("/")
    async with pool.acquire() as conn:
        await charge_boxes.add_charge_boxes(conn, ["CB-1", "CB-2"], "charger-key-0123456789")
        await customers.add_customer(conn, "ann@example.com", lago_subscription_id="sub_ann")
        await id_tags.add_id_tag(conn, "ANN1", customer_email="ann@example.com")
        pk = await conn.fetchval("SELECT id FROM ocpp.charge_boxes WHERE charge_box_id = 'CB-1'")
        await conn.execute(
            "INSERT INTO ocpp.transactions (charge_box_pk, connector_id, id_tag, start_timestamp, meter_start) "
            "VALUES ($1, 1, 'ANN1', now(), 0)",
            pk,
        )
    await make_user("sweep@example.com", "admin")

    def sweep() -> list[str]:
        import requests

        session = requests.Session()
        token = session.post(
            base + "/api/admin/v1/auth/token",
            json={"email": "sweep@example.com", "password": "correct horse battery staple"},
        ).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        schema = schemathesis.openapi.from_url(base + DOC)
        failures: list[str] = []
        tested = 0
        for result in schema.get_all_operations():
            op = result.ok()
            if (op.method.upper(), op.path) in SKIP:
                continue
            tested += 1

            @hypothesis.settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @hypothesis.given(case=op.as_strategy())
            def check(case):
                response = case.call(base_url=base, session=session, headers=headers, timeout=30)
                try:
                    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
                except Exception as exc:
                    failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {exc}"[:500])

            check()
        assert tested >= 25
        return failures

    failures = await asyncio.to_thread(sweep)
    assert not failures, "\n".join(failures[:10])


# ------------------------------------------------------------------ an operator's sweep (issue 15)

OPERATOR_EXAMPLES = int(os.environ.get("POLARIS_OPERATOR_SWEEP_EXAMPLES", "6"))
OPERATIONS_PATH = "/api/admin/v1/chargers/{charge_box_id}/operations/{operation}"


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
async def test_an_operators_sweep_finds_no_admin_action_that_answers_2xx(
        command_api, aiohttp_server, web_app, pool, make_user):
    """With an operator's token: every admin-only endpoint (the document's x-roles), every
    admin-only OCPP operation and configuration key (the actions' table), and the admin-only
    switches inside shared endpoints answer anything but 2xx; the OCPP server never hears of them."""
    from polaris.services.admin.actions import required_role
    from polaris.services.command_client import OPERATIONS

    server = await aiohttp_server(web_app)
    base = str(server.make_url("")).rstrip("/")
    async with pool.acquire() as conn:
        await charge_boxes.add_charge_boxes(conn, ["CB-1"], "charger-key-0123456789")
        await customers.add_customer(conn, "ann@example.com", lago_subscription_id="sub_ann")
        await id_tags.add_id_tag(conn, "ANN1", customer_email="ann@example.com")
    await make_user("boss@example.com", "admin")
    await make_user("op@example.com", "operator")

    def sweep() -> tuple[list[str], int]:
        import requests

        session = requests.Session()

        def token(email: str) -> dict:
            resp = session.post(base + "/api/admin/v1/auth/token",
                                json={"email": email, "password": "correct horse battery staple"})
            return resp.json()

        admin_token = token("boss@example.com")
        headers = {"Authorization": f"Bearer {token('op@example.com')['token']}"}
        schema = schemathesis.openapi.from_url(base + DOC)
        failures: list[str] = []

        def admin_only(case) -> bool:
            if case.path == OPERATIONS_PATH:
                body = case.body if isinstance(case.body, dict) else {}
                return required_role(case.path_parameters["operation"], body) == "admin"
            if case.path == "/api/admin/v1/auth/tokens":
                return str((case.query or {}).get("all", "")).lower() in ("true", "1")
            return case.operation.definition.raw.get("x-roles") == ["admin"]

        def check(case) -> None:
            response = case.call(base_url=base, session=session, headers=headers, timeout=30)
            if admin_only(case) and 200 <= response.status_code < 300:
                failures.append(f"{case.method} {case.formatted_path} {case.query or ''} {case.body!r}"
                                f" -> {response.status_code}"[:300])

        tried = 0
        for result in schema.get_all_operations():
            op = result.ok()
            if op.path != OPERATIONS_PATH and op.path != "/api/admin/v1/auth/tokens" \
                    and op.definition.raw.get("x-roles") != ["admin"]:
                continue

            @hypothesis.settings(max_examples=OPERATOR_EXAMPLES, deadline=None, database=None, derandomize=True,
                                 phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @hypothesis.given(case=op.as_strategy())
            def generated(case):
                check(case)

            generated()
            tried += 1
            if op.path == OPERATIONS_PATH:
                # Every operation the document lists, and the configuration keys only admins set.
                cases = [{"operation": name} for name in OPERATIONS]
                for fields in ({"key": "SecurityProfile", "value": "0"}, {"key": "AuthorizationKey", "value": "x" * 20},
                               {"key": "AllowOfflineTxForUnknownId", "value": "true"}, {"key": "VendorUrl", "value": "x"}):
                    cases.append({"operation": "ChangeConfiguration", "body": fields})
                for c in cases:
                    check(op.Case(path_parameters={"charge_box_id": "CB-1", "operation": c["operation"]},
                                  body=c.get("body", {}), media_type="application/json"))
            if op.path == "/api/admin/v1/auth/tokens":
                check(op.Case(query={"all": "true"}))
        # Another person's token: revoking it is the admin's business.
        revoke = schema["/api/admin/v1/auth/tokens/{token_id}"]["DELETE"]
        check(revoke.Case(path_parameters={"token_id": admin_token["info"]["id"]}))
        return failures, tried

    failures, tried = await asyncio.to_thread(sweep)
    assert tried >= 8
    assert not failures, "\n".join(failures[:10])

    assert command_api.calls, "the sweep did reach the OCPP server with what operators may send"
    assert all(required_role(op, body) == "operator" for op, body in command_api.calls), command_api.calls
