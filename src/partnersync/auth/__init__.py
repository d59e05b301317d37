"""Credentials: the encrypted vault and the httpx.Auth flows that put them on requests."""
