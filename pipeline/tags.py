"""The triage graph's three outputs, by tag: rows to store, drafts to review, dead letters."""

# Positive and neutral chats: `TriageRow`s, for BigQuery.
MAIN = "main"
# Negative chats with their apology draft: `ReviewMessage`s, for the review topic.
NEGATIVE = "negative"
# Whatever failed, at any stage: `DeadLetter`s, for the dead-letter topic and the replay job.
ERROR = "error"
# Positive and neutral chats an agent should look at (their rows go to `main` too): `SentimentCheck`s, for the
# review topic.
CHECK = "check"
