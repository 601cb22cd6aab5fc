"""OCPP 2.0.1: the handlers (`charge_point.ChargePoint`), framing and error codes (`protocol`),
TransactionEvent onto our sessions (`transactions`), meter values (`metering`) and CSMS
operations (`operations`) of this version."""

from polaris.ocpp.v201.charge_point import ChargePoint

__all__ = ["ChargePoint"]
