"""Host names as they go in URLs (the agent's banner, the MLflow UI's address)."""

from __future__ import annotations


def url_host(host: str) -> str:
    """``host`` as it goes in a URL: an IPv6 address in brackets (``http://[::1]:8765``)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


__all__ = ["url_host"]
