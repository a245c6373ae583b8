"""Constant Contact: the v3 API client, the accounts and their tokens, the cluster rate limit."""
