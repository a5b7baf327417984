"""``fleetctl``: the operators' command line over the Overlord's public HTTP API."""
