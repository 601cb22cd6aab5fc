"""Secrets never stored or shown in clear: the one place that knows which values are secret.

The audit log and the OCPP message journal both pass what they store through `redact`, so
a charger key sent with ChangeConfiguration (OCPP 1.6 `AuthorizationKey`) or SetVariables
(OCPP 2.0.1 `SecurityCtrlr.BasicAuthPassword`), a password in a network profile, or a key
a charger echoes back in GetConfiguration is kept as `[redacted]`: anyone who may read the
log or the journal (operators) never learns a secret from it.
"""

from __future__ import annotations

from typing import Any

REDACTED = "[redacted]"

# Configuration keys (1.6) and `component.variable` names (2.0.1) whose value is a secret.
SECRET_CONFIG_KEYS = frozenset(
    {
        "authorizationkey",
        "securityctrlr.basicauthpassword",
    }
)
# Field names whose value is a secret wherever they appear (2.0.1 SetNetworkProfile's APN
# settings, a key sent as a named field). A bare `password` is one only in a VPN profile:
# elsewhere our audit entries use it to say what happened ("changed"), never the value.
SECRET_FIELDS = frozenset({"apnpassword", "basicauthpassword", "authorizationkey", "privatekey"})
VPN_SECRETS = frozenset({"password", "key"})


def is_secret_key(name: object) -> bool:
    """Whether a configuration key (or `Component.Variable`) holds a secret; case-insensitive."""
    return isinstance(name, str) and name.strip().lower() in SECRET_CONFIG_KEYS


def _variable_name(item: dict[str, Any]) -> str | None:
    component, variable = item.get("component"), item.get("variable")
    if isinstance(component, dict) and isinstance(variable, dict):
        return f"{component.get('name')}.{variable.get('name')}"
    return None


def redact(value: Any) -> Any:
    """A copy of `value` (JSON-like data) with every secret replaced by `[redacted]`."""
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if not isinstance(value, dict):
        return value
    secret_pair = is_secret_key(value.get("key")) or is_secret_key(_variable_name(value))
    vpn = "server" in value and "key" in value  # 2.0.1 VPNType: `key` and `password` are secrets
    out: dict[str, Any] = {}
    for k, v in value.items():
        name = k.lower() if isinstance(k, str) else k
        if name in SECRET_FIELDS and v not in (None, ""):
            out[k] = REDACTED
        elif secret_pair and name in ("value", "attributevalue") and v not in (None, ""):
            out[k] = REDACTED
        elif vpn and name in VPN_SECRETS and v not in (None, ""):
            out[k] = REDACTED
        else:
            out[k] = redact(v)
    return out
