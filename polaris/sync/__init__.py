"""The Lago billing sync (`polaris sync`): every kWh into Lago exactly once.

lago.py talks to Lago; rating.py decides what a transaction owes (pure functions);
ledger.py writes events before sending and marks them after; cadence.py decides how
often to run; worker.py runs one pass; scheduler.py runs passes on the cadence with one
active worker per deployment; reconcile.py compares the ledger with Lago.
"""
