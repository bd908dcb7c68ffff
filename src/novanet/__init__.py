"""novanet: a network service for clouds of virtual machines (nova-network re-created)."""

__version__ = "0.1.0"
