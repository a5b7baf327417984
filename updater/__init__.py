"""The device agent ``fleet-updater``: A/B OS updates with tryboot commit and fallback.

Device code: it imports only ``fleetcore`` and ``signing``.
"""
