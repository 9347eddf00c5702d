"""Beam model handlers."""
