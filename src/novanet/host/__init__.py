"""The host side: desired state (pure) and the realizers that make the kernel match it."""
