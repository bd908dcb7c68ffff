"""`novanet sandbox`: a whole cloud on one machine, in network namespaces: an outside
network, a network host and compute hosts on an underlay, one real `novanet agent` per
host, its own SQLite database, networks, instances (namespaces or qemu guests) and
floating IPs. Nothing is built in the root namespace."""
