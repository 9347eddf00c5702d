"""The chat-triage pipeline: contracts, transforms, graph and entry points."""

METRICS_NAMESPACE = "chat_triage"
