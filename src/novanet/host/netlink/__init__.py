"""Links and addresses: the realizer facade (bridges, VLAN/VXLAN, veth/tap, addresses)
over a pyroute2 backend and a faithful fake, and drift checks."""
