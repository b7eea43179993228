"""Conveyor: self-service continuous delivery."""
__version__ = "0.1.0"
