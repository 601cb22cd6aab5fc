"""SQL per aggregate: async functions taking a connection first. Every write goes through here."""
