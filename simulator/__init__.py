"""The fleet simulator: simulated devices against a real Overlord (demo and load modes).

It sits at the top of the import graph, beside qemu-tests: it may import every component.
"""
