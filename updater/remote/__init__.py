"""Remote troubleshooting on the device (ADR 0074): the journal tail and the local veto."""
