"""Spiderweb: Spiderpool-compatible underlay IPAM with a Django portal. No side effects on import."""

__version__ = "0.1.0"
