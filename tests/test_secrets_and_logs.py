"""No credentials in the repository or in what a run logs, and no chat text in the logs at INFO level."""

from __future__ import annotations

import json
import logging
import re
import subprocess
from pathlib import Path

from pipeline import batch
from tests.support import write_lines

ROOT = Path(__file__).resolve().parent.parent
# What leaked credentials look like: key files, service-account JSON, cloud and Kaggle keys, OAuth and PATs.
CREDENTIALS = re.compile(
    r"-----BEGIN (?:RSA |EC |OPENSSH |ENCRYPTED )?PRIVATE KEY-----"
    r"|\"private_key(?:_id)?\"\s*:\s*\"[^\"]"
    r"|AIza[0-9A-Za-z_\-]{35}"
    r"|ya29\.[0-9A-Za-z_\-]{20,}"
    r"|AKIA[0-9A-Z]{16}"
    r"|gh[pousr]_[0-9A-Za-z]{36}"
    r"|KAGGLE_KEY\s*[=:]\s*['\"]?[0-9a-f]{32}"
    r"|\"key\"\s*:\s*\"[0-9a-f]{32}\""
    r"|Bearer [0-9A-Za-z_\-.]{20,}"
)
# Text that only the chats of the run below contain; the card number is what a customer might paste.
MARKER = "zebra-quokka-7781"
CHATS = [
    {"id": "log-1", "user_id": 1, "chat_message": f"{MARKER} my card 4111 1111 1111 1111 was charged twice"},
    {"id": "log-2", "user_id": 2, "chat_message": f"Thanks, the burger was great! {MARKER}"},
]
BAD = [f"{{not json {MARKER}", json.dumps({"id": "log-3", "user_id": 3, "chat_message": 5, "note": MARKER})]


def test_the_credential_patterns_catch_what_they_are_for():
    # Assembled here, so that this file does not hold what the repository scan below looks for.
    leaked = ['{"type": "service_account", "private' + '_key": "-----BEGIN PRIVATE' + ' KEY-----\\nMIIE"}',
              "KAGGLE" + "_KEY=" + "0123456789abcdef" * 2, "AIza" + "A" * 35]
    assert all(CREDENTIALS.search(text) for text in leaked)
    assert not CREDENTIALS.search("export KAGGLE_USERNAME=... KAGGLE_KEY=...")


def test_no_credentials_in_the_repository():
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    found = []
    for name in filter(None, tracked.decode().split("\0")):
        path = ROOT / name
        if path.is_file():
            text = path.read_text(errors="ignore")
            found += [f"{name}: {match.group()[:30]}" for match in CREDENTIALS.finditer(text)]
    assert not found


def test_a_run_logs_no_chat_text_and_no_credentials_at_info(tiny_gemma, tmp_path, caplog, capfd):
    source = write_lines(tmp_path / "chats.jsonl", [*CHATS, *BAD])
    with caplog.at_level(logging.INFO):
        batch.run([
            "--input", str(source), "--output_dir", str(tmp_path / "out"), "--model", tiny_gemma,
            "--max_length", "384", "--apology_max_length", "384", "--model_family", "instruct",
        ])
    output = capfd.readouterr()
    logged = "\n".join(record.getMessage() for record in caplog.records) + output.out + output.err
    assert len(caplog.records) > 10, "INFO records were captured"
    assert MARKER not in logged and "4111" not in logged
    assert not CREDENTIALS.search(logged)
    # The text is in the outputs, where it belongs.
    assert MARKER in "".join(path.read_text() for path in (tmp_path / "out").glob("*.jsonl"))

