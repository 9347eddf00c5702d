"""The chat-triage pipeline: contracts, transforms, graph and entry points."""
