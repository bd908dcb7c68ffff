"""DHCP: one dnsmasq per network, its configuration files (config) and its process
(process); the realizer facade is in realizer."""
