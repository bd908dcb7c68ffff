"""The host agent: reconcile loop, lease events, metrics."""
