"""Shared low-level plumbing for every Metrica Fleet component.

It imports nothing else of the project, so device, build and server code can all use it.
"""
