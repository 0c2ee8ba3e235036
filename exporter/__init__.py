"""Exporter: turns registries and open-data portals into published, verifiable archives."""

__version__ = "0.1.0"
