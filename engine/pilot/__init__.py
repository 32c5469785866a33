"""Pilot: a computer as a first-class Home Assistant device, declared in YAML profiles."""

__version__ = "0.1.0"
