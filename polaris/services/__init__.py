"""The aiohttp process (`polaris web`): admin API, customer API, hooks, live events, email, push."""
