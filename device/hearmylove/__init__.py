"""Hear My Love: the speaker that tells stories in a parent's voice."""

__version__ = "0.1.0"
