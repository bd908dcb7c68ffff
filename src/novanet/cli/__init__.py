"""The ``novanet`` command: nova-manage's network commands, over the service layer."""
