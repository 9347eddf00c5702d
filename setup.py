"""Kept only because Dataflow stages the package with `--setup_file`; pyproject.toml holds the metadata."""

import setuptools

setuptools.setup()
