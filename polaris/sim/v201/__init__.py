"""The OCPP 2.0.1 side of a simulated charging station: `adapter.py` says the station's events in
2.0.1 messages (TransactionEvent with seqNo), `handlers.py` answers the CSMS's 2.0.1 requests
through the station's public API, `device_model.py` holds its components and variables."""
