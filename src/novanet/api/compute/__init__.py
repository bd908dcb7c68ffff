"""The Compute API's network endpoints (nova's Havana os-* extensions)."""
