"""The OCPP 2.0.1 device model of each charger: components, variables and their attributes."""

from __future__ import annotations

import json

import asyncpg

_KEY = ("component", "component_instance", "evse_id", "connector_id", "variable", "variable_instance",
        "attribute_type")


def _component(component: dict) -> tuple[str, str, int, int]:
    evse = component.get("evse") or {}
    return (str(component.get("name", "")), str(component.get("instance") or ""),
            int(evse["id"]) if "id" in evse else -1,
            int(evse["connectorId"]) if "connectorId" in evse else -1)


def _variable(variable: dict) -> tuple[str, str]:
    return str(variable.get("name", "")), str(variable.get("instance") or "")


async def store_report(conn: asyncpg.Connection, charge_box_pk: int, report_data: list[dict]) -> int:
    """Store NotifyReport's reportData (camelCase, as received); the number of attributes written."""
    rows = []
    for item in report_data:
        comp = _component(item.get("component") or {})
        var = _variable(item.get("variable") or {})
        chars = item.get("variableCharacteristics") or {}
        for attr in item.get("variableAttribute") or ():
            rows.append((*comp, *var, str(attr.get("type") or "Actual"),
                         None if attr.get("value") is None else str(attr["value"]),
                         attr.get("mutability"), attr.get("persistent"), attr.get("constant"),
                         chars.get("dataType"), chars.get("unit"), json.dumps(chars) if chars else None))
    if rows:
        await conn.executemany(
            """
            INSERT INTO ocpp.device_model_variables
                (charge_box_pk, component, component_instance, evse_id, connector_id, variable,
                 variable_instance, attribute_type, value, mutability, persistent, constant, data_type,
                 unit, characteristics)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15::jsonb)
            ON CONFLICT (charge_box_pk, component, component_instance, evse_id, connector_id, variable,
                         variable_instance, attribute_type)
            DO UPDATE SET value = EXCLUDED.value, mutability = EXCLUDED.mutability,
                persistent = EXCLUDED.persistent, constant = EXCLUDED.constant,
                data_type = coalesce(EXCLUDED.data_type, ocpp.device_model_variables.data_type),
                unit = coalesce(EXCLUDED.unit, ocpp.device_model_variables.unit),
                characteristics = coalesce(EXCLUDED.characteristics, ocpp.device_model_variables.characteristics),
                updated_at = now()
            """,
            [(charge_box_pk, *row) for row in rows],
        )
    return len(rows)


async def store_values(conn: asyncpg.Connection, charge_box_pk: int, results: list[dict]) -> int:
    """Store the values GetVariables returned, or SetVariables set (Accepted ones only)."""
    rows = []
    for r in results:
        status = r.get("attributeStatus")
        if status != "Accepted" or "value" not in r and "attributeValue" not in r:
            continue
        comp = _component(r.get("component") or {})
        var = _variable(r.get("variable") or {})
        value = r.get("attributeValue", r.get("value"))
        rows.append((charge_box_pk, *comp, *var, str(r.get("attributeType") or "Actual"), str(value)))
    if rows:
        await conn.executemany(
            """
            INSERT INTO ocpp.device_model_variables
                (charge_box_pk, component, component_instance, evse_id, connector_id, variable,
                 variable_instance, attribute_type, value)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            ON CONFLICT (charge_box_pk, component, component_instance, evse_id, connector_id, variable,
                         variable_instance, attribute_type)
            DO UPDATE SET value = EXCLUDED.value, updated_at = now()
            """,
            rows,
        )
    return len(rows)


async def list_variables(conn: asyncpg.Connection, charge_box_pk: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {', '.join(_KEY)}, value, mutability, data_type, unit, updated_at "
        "FROM ocpp.device_model_variables WHERE charge_box_pk = $1 "
        "ORDER BY component, component_instance, evse_id, connector_id, variable, variable_instance, attribute_type",
        charge_box_pk,
    )
