"""Evaluation and fine-tuning of the triage model: run by developers, never shipped to the workers."""
