"""OCPP 1.6J: the handlers (`charge_point.ChargePoint`), framing and schema rules
(`protocol`) and central-system operations (`operations`) of this version."""

from polaris.ocpp.v16.charge_point import ChargePoint

__all__ = ["ChargePoint"]
