"""An example Pilot plugin (see docs/plugins.md in Pilot): nothing is registered until Pilot asks."""

__version__ = "0.1.0"
