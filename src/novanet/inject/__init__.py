"""Writing an instance's network configuration into its guest: the original's Flat-mode
injection (/etc/network/interfaces) into an ext4 image or a directory tree, and an
OpenStack config drive (network_data.json, meta_data.json) for cloud-init and Glean."""
