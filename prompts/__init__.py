"""Prompt templates, one TOML file each, with the version that every output record carries."""
