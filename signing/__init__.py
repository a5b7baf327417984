"""The release trust chain: TUF keys, signing and rotation, and device-side verification.

Repository side (build host, CI, Overlord): ``keys``, ``repository``.
Device side: ``client``, ``rollback``. The device side imports only tuf.ngclient and fleetcore.
"""
