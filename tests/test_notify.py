"""Word when a job ends: a real worker process with the fake pipeline, a webhook server on 127.0.0.1 and
notify commands; the [notify] table's validation; the payload shapes."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import test_worker_process
from conftest import JobFactory

from runner import commands
from runner.cli import main
from runner.core.jobstate import JobState
from runner.store import Store
from runner.worker.notify import JobEnd, webhook_request

spawn = test_worker_process.spawn  # the fixture that starts real worker processes
wait_for = test_worker_process.wait_for
TOKEN = "tok3n-a1b2c3d4e5f6"  # the secret part of the webhook URL
RECORD_ENV = (  # a notify command that appends its TUNEQ_JOB_* environment to a file as a JSON line
    "import json, os, sys\n"
    "with open(sys.argv[1], 'a') as f:\n"
    "    f.write(json.dumps({k: v for k, v in os.environ.items() if k.startswith('TUNEQ_JOB_')}) + '\\n')\n"
)


class Hook:
    """A webhook receiver on 127.0.0.1: records each POST (path and JSON body); ``/fail/...`` answers 500."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.posts.append((self.path, body))
                self.send_response(500 if self.path.startswith("/fail/") else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self, job: int) -> list[dict[str, Any]]:
        return [body for _, body in self.posts if body.get("job") == job]


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hook]:
    """The receiver; the worker finds its URL (with a token in the path) in $TUNEQ_TEST_HOOK."""
    server = Hook()
    monkeypatch.setenv("TUNEQ_TEST_HOOK", f"{server.url}/hook/{TOKEN}")
    yield server
    server.server.shutdown()


def with_notify(path: Path, table: str) -> Path:
    path.write_text(path.read_text() + f"\n[notify]\n{table}\n")
    return path


def record_command(out: Path) -> str:
    return f"command = {json.dumps([sys.executable, '-c', RECORD_ENV, str(out)])}"


def test_webhook_and_command_fire_once_per_job_end_with_its_fields(
    store: Store,
    make_job: JobFactory,
    spawn,
    hook: Hook,
    tmp_path: Path,
) -> None:
    envs = tmp_path / "envs.jsonl"
    table = f'url_env = "TUNEQ_TEST_HOOK"\n{record_command(envs)}'
    (ok,) = commands.submit(store, [with_notify(make_job("good", "tested=q4_k_m"), table)])
    (bad,) = commands.submit(store, [with_notify(make_job("bad", "fail"), table)])
    (long,) = commands.submit(store, [with_notify(make_job("long", "steps=100 sleep=60"), table)])
    spawn()
    wait_for(lambda: store.get(long.id).progress.step is not None)
    commands.cancel(store, long.id)
    wait_for(lambda: len(hook.posts) == 3 and envs.exists() and len(envs.read_text().splitlines()) == 3)
    time.sleep(1)  # nothing more comes
    assert len(hook.posts) == 3 and len(envs.read_text().splitlines()) == 3
    assert {path for path, _ in hook.posts} == {f"/hook/{TOKEN}"}

    (good,) = hook.bodies(ok.id)
    gguf = str(Path(store.get(ok.id).run_dir) / "gguf" / "good-Q4_K_M.gguf")
    assert (good["v"], good["name"], good["state"], good["tested_gguf"]) == (1, "good", "succeeded", gguf)
    assert good["reason"] is None and 0 <= good["duration_s"] < 30
    assert good["run_dir"] == store.get(ok.id).run_dir and gguf in good["text"]
    (failed,) = hook.bodies(bad.id)
    assert (failed["state"], failed["reason"], failed["tested_gguf"]) == ("failed", "fake failure", None)
    (cancelled,) = hook.bodies(long.id)
    assert (cancelled["state"], cancelled["reason"]) == ("cancelled", "cancelled by the user")

    by_id = {int(e["TUNEQ_JOB_ID"]): e for e in map(json.loads, envs.read_text().splitlines())}
    assert by_id[ok.id] | {"TUNEQ_JOB_DURATION_S": ""} == {
        "TUNEQ_JOB_ID": str(ok.id),
        "TUNEQ_JOB_NAME": "good",
        "TUNEQ_JOB_STATE": "succeeded",
        "TUNEQ_JOB_REASON": "",
        "TUNEQ_JOB_GGUF": gguf,
        "TUNEQ_JOB_DURATION_S": "",
        "TUNEQ_JOB_RUN_DIR": store.get(ok.id).run_dir,
    }
    assert float(by_id[ok.id]["TUNEQ_JOB_DURATION_S"]) == good["duration_s"]
    assert (by_id[bad.id]["TUNEQ_JOB_STATE"], by_id[bad.id]["TUNEQ_JOB_REASON"]) == ("failed", "fake failure")
    assert by_id[long.id]["TUNEQ_JOB_STATE"] == "cancelled"


def test_the_queue_default_applies_to_jobs_without_a_notify_table(
    store: Store,
    make_job: JobFactory,
    spawn,
    hook: Hook,
    home: Path,
) -> None:
    (home / "notify.toml").write_text(
        '[notify]\nurl_env = "TUNEQ_TEST_HOOK"\nformat = "slack"\non = ["failed"]\n'
    )
    (plain,) = commands.submit(store, [make_job("plain", "fail")])
    (fine,) = commands.submit(store, [make_job("fine")])  # succeeded: not in the default's `on`
    (silent,) = commands.submit(store, [with_notify(make_job("silent", "fail"), "")])  # its own, empty table
    spawn()
    wait_for(lambda: store.get(silent.id).state.is_finished)
    time.sleep(1)
    assert store.get(fine.id).state is JobState.SUCCEEDED
    assert [body for _, body in hook.posts] == [{"text": hook.posts[0][1]["text"]}]
    assert hook.posts[0][1]["text"].startswith(f"tuneq job {plain.id} 'plain' failed after ")


def test_a_hanging_notifier_does_not_delay_the_next_job_and_a_failing_one_is_logged(
    store: Store,
    make_job: JobFactory,
    spawn,
    hook: Hook,
    tmp_path: Path,
) -> None:
    hang = 'command = ["sleep", "60"]\ntimeout_s = 120\nurl_env = "TUNEQ_TEST_HOOK"'
    failing = [sys.executable, "-c", "print('no route to pager'); raise SystemExit(3)"]
    fail = f"command = {json.dumps(failing)}"
    (slow,) = commands.submit(store, [with_notify(make_job("slow"), hang)])
    (broken,) = commands.submit(store, [with_notify(make_job("broken"), fail)])
    (after,) = commands.submit(store, [make_job("after")])
    spawn()
    wait_for(lambda: store.get(after.id).state.is_finished)
    slow_end, next_start = store.get(slow.id).finished_at, store.get(broken.id).started_at
    assert slow_end is not None and next_start is not None and next_start - slow_end < 3
    assert {store.get(j.id).state for j in (slow, broken, after)} == {JobState.SUCCEEDED}
    assert len(hook.bodies(slow.id)) == 1  # the webhook went out while the command still sleeps
    log = tmp_path / "worker0.log"
    wait_for(lambda: "notify command" in log.read_text())
    assert (
        f"job {broken.id}: notify command {sys.executable} exited 3\n    no route to pager" in log.read_text()
    )


def test_the_webhook_token_never_reaches_the_log_events_or_database(
    store: Store,
    make_job: JobFactory,
    spawn,
    hook: Hook,
    tmp_path: Path,
    monkeypatch,
) -> None:
    monkeypatch.setenv("TUNEQ_FAILING_HOOK", f"{hook.url}/fail/{TOKEN}?auth={TOKEN}")
    monkeypatch.setenv("TUNEQ_DEAD_HOOK", f"http://127.0.0.1:9/{TOKEN}")  # nothing listens on port 9
    jobs = []
    for name in ("failing", "dead"):
        table = f'url_env = "TUNEQ_{name.upper()}_HOOK"'
        jobs += commands.submit(store, [with_notify(make_job(name), table)])
    spawn()
    log = tmp_path / "worker0.log"
    wait_for(lambda: log.read_text().count("webhook http://127.0.0.1/… failed") == 2)
    assert "HTTP Error 500" in log.read_text()
    assert len(hook.posts) == 1
    texts = [log.read_text(), store.path.read_bytes().decode(errors="replace")]
    for job in jobs:
        run_dir = Path(store.get(job.id).run_dir)
        texts += [p.read_text(errors="replace") for p in run_dir.rglob("*") if p.is_file()]
    assert not [t for t in texts if TOKEN in t]


def test_notify_problems_are_reported_one_line_each_without_echoing_a_url(
    make_job: JobFactory, capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    table = (
        'command = "notify-send done"\nurl_env = "https://ntfy.sh/my-secret-topic"\n'
        'format = "teams"\non = ["done"]\ntimeout_s = 0\n'
    )
    path = with_notify(make_job("x"), table)
    assert main(["submit", str(path)]) == 2
    err = capsys.readouterr().err
    assert "my-secret-topic" not in err
    start = len(path.read_text().splitlines()) - 5
    for offset, key in enumerate(("command", "url_env", "format", "on.0", "timeout_s")):
        assert f"{path}:{start + offset}: notify.{key}: " in err, err
    assert "url_env names an environment variable, not the URL" in err
    assert len(err.strip().splitlines()) == 5


def test_payload_shapes() -> None:
    end = JobEnd(3, "demo", "succeeded", None, "/r/3/gguf/demo-Q4_K_M.gguf", 65.0, "/r/3", "box")
    assert end.text == "tuneq job 3 'demo' succeeded after 1m05s on box: /r/3/gguf/demo-Q4_K_M.gguf"
    assert webhook_request("slack", "https://hooks.example/services/T/B/X", end) == (
        "https://hooks.example/services/T/B/X",
        {"text": end.text},
    )
    url, body = webhook_request("ntfy", "https://ntfy.example/sub/alerts-x?auth=abc", end)
    assert url == "https://ntfy.example/sub/?auth=abc"
    assert body == {
        "topic": "alerts-x",
        "title": "tuneq: demo succeeded",
        "message": end.text,
        "tags": ["white_check_mark"],
        "priority": 3,
    }
    url, body = webhook_request("json", "http://127.0.0.1:1/h", end)
    assert body["job"] == 3 and body["tested_gguf"] == "/r/3/gguf/demo-Q4_K_M.gguf" and body["v"] == 1


def test_notify_test_sends_a_made_up_end_now_and_says_what_failed(
    home: Path, hook: Hook, make_job: JobFactory, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    assert main(["notify-test"]) == 2
    assert "nothing to send" in capsys.readouterr().err
    (home / "notify.toml").write_text('[notify]\nurl_env = "TUNEQ_TEST_HOOK"\n')
    assert main(["notify-test"]) == 0
    assert [body["name"] for _, body in hook.posts] == ["notify-test"]
    assert "webhook http://127.0.0.1/… answered 200" in capsys.readouterr().err

    monkeypatch.setenv("TUNEQ_TEST_HOOK", f"{hook.url}/fail/{TOKEN}")
    job = with_notify(make_job("x"), 'url_env = "TUNEQ_TEST_HOOK"\ncommand = ["false"]')
    assert main(["notify-test", str(job)]) == 1
    err = capsys.readouterr().err
    assert "HTTP Error 500" in err and "notify command false exited 1" in err and TOKEN not in err
    (home / "notify.toml").write_text('[notify]\nurl_env = "TUNEQ_TEST_HOOK"\nformt = "slack"\n')
    assert main(["notify-test"]) == 2
    assert f"{home / 'notify.toml'}:3: notify.formt: unknown key" in capsys.readouterr().err


def test_an_interrupted_job_notifies_only_once_its_retries_are_used_up(
    store: Store, make_job: JobFactory, spawn, hook: Hook
) -> None:
    table = 'url_env = "TUNEQ_TEST_HOOK"'
    (job,) = commands.submit(store, [with_notify(make_job("long", "steps=100 sleep=60", retries=1), table)])
    for attempt in (1, 2):
        worker = spawn()
        wait_for(
            lambda n=attempt: store.get(job.id).attempts == n and store.get(job.id).progress.step is not None
        )
        worker.send_signal(signal.SIGTERM)  # the job is interrupted: requeued, then (no retry left) final
        assert worker.wait(timeout=60) == 0
    assert store.get(job.id).state is JobState.INTERRUPTED
    (body,) = [body for _, body in hook.posts]  # sent before the worker exited; none for the requeue
    assert (body["job"], body["state"], body["reason"]) == (job.id, "interrupted", "its worker was stopped")
