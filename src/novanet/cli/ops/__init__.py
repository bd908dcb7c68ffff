"""CLI commands for operating the service: agent, api/serve, services, tokens, db/admin."""
