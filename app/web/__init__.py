"""Web views served by the Faust app (aiohttp)."""
