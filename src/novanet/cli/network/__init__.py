"""CLI commands for networks and addresses: network, fixed, floating, instance."""
