"""The local stack's parts that need no emulator: starting and stopping processes, the BigQuery override, keys."""

import pickle
import sys

import pytest

from local import stack as local_stack
from local.bigquery import EmulatorBigQueryClient
from local.job import message_key
from local.stack import StackError, start_service


def test_a_service_is_stopped_by_its_process_id(tmp_path):
    service = start_service(
        "sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "log", ready=lambda: True
    )
    service.stop()
    assert service.process.poll() is not None


def test_a_service_that_exits_early_reports_its_log(tmp_path):
    command = [sys.executable, "-c", "print('port already in use'); raise SystemExit(3)"]
    with pytest.raises(StackError, match="exited with code 3:\nport already in use"):
        start_service("broken", command, tmp_path / "log", ready=lambda: False)


def test_a_missing_pubsub_emulator_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.delenv("CHAT_TRIAGE_PUBSUB_EMULATOR", raising=False)
    monkeypatch.setattr(local_stack, "PUBSUB_EMULATOR", tmp_path / "absent")
    monkeypatch.setattr(local_stack.shutil, "which", lambda name: None)
    with pytest.raises(StackError, match="apt-get install google-cloud-cli-pubsub-emulator"):
        local_stack.pubsub_emulator_command()


def test_the_bigquery_override_pickles_without_its_clients():
    client = EmulatorBigQueryClient("http://127.0.0.1:9050", "chat-triage-local")
    assert client.tables is not None  # builds the apitools client
    copy = pickle.loads(pickle.dumps(client))
    assert vars(copy) == {"endpoint": "http://127.0.0.1:9050", "project": "chat-triage-local"}
    assert copy._apitools.url == "http://127.0.0.1:9050/bigquery/v2/"


@pytest.mark.parametrize(
    ("payload", "key"),
    [
        (b'{"id": 7, "user_id": 1, "chat_message": "hi"}', "7"),
        (b'{"id": "web-7", "user_id": 1}', "web-7"),
        (b"not json", "not json"),
        (b'["id", 93]', '["id", 93]'),
    ],
)
def test_a_message_is_known_by_its_chat_id_or_else_its_payload(payload, key):
    assert message_key(payload) == key
