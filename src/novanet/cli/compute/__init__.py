"""CLI commands compute hosts call: vif plug/unplug (and guest-side helpers)."""
