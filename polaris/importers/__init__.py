"""Bringing data over from the systems Polaris Express replaces (`polaris import ...`).

steve/  SteVe's MySQL/MariaDB database (and the original web app's Postgres, for its QR
        public ids and billing state): chargers, cards, customers, reservations, sessions.
"""
