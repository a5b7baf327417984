"""The EEPROM bootloader of a Pi 4 or Pi 5: read it, stage an update, verify it after boot.

One concern per module: ``version`` (``vcgencmd bootloader_version``'s output), ``settings``
(``rpi-eeprom-config``'s output), ``sig`` (the ``pieeprom.sig`` format), ``probe`` (running
the tools and the verdict for the heartbeat), ``stage`` (writing the update where the ROM or
the A/B EEPROM tool takes it), ``pending`` (the persisted bootloader update, verified after the
reboot). The minimum versions are ``fleetcore.bootloader``.
"""
