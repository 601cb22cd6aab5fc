"""`polaris import steve`: a SteVe database brought over, so chargers, cards and billing continue.

  source.py   reads SteVe's tables (aiomysql) and the original web app's (asyncpg), read only
  apply.py    maps them onto ours through polaris.db.repos.steve_import, in one transaction,
              idempotent (ocpp.steve_imports), with a report of what it could not map
"""

from polaris.importers.steve.apply import Report, import_steve

__all__ = ["Report", "import_steve"]
