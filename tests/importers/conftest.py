"""The OCPP server fixtures, so an import can be followed by chargers connecting."""

from tests.ocpp_server.conftest import hooks_web, ocpp, ocpp_settings, open_charger  # noqa: F401
