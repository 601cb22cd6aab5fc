"""The operator console (`polaris tui`): a Textual app that speaks only HTTP to the admin API.

Core modules here (api_client, models, credentials, events, charger_store) never import
textual; the UI lives in app.py, screens/ and widgets/.
"""
