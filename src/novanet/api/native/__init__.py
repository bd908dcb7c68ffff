"""The native API (/v1): what compute hosts and operators need beyond the Compute API."""
