"""Shared HTTP machinery: client with retries and error table, rate limiting, pagination."""
