"""Cloudpipe: the per-project VPN (certificates, configs, the agent's appliance, a probe)."""
