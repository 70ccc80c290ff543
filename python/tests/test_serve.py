"""`alpool serve` as Label Studio's ML backend, driven the way Label Studio
drives it (the same request bodies), without Label Studio itself: bad
requests, the token, concurrent webhooks, and a kill -9 in the middle of a
stream of webhooks. (test_label_studio.py connects a real Label Studio.)"""

from __future__ import annotations

import base64
import json
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from studio import HttpError, alpool, call, free_port
from test_label_studio import CLASSES, make_workspace


class Server:
    def __init__(self, cli: Path, ws: Path, *extra: Any) -> None:
        self.port = free_port()
        args = [str(cli), "serve", str(ws), "--port", str(self.port), *map(str, extra)]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        assert "listening" in line, line
        self.url = f"http://127.0.0.1:{self.port}"

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        return call("POST", self.url + path, body, headers, timeout=30)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def webhook(token: str, row: int, label: str, annotation: int, task: int | None = None) -> dict:
    """The body Label Studio sends for ANNOTATION_CREATED (the parts alpool
    reads, plus some it ignores)."""
    return {
        "action": "ANNOTATION_CREATED",
        "annotation": {
            "id": annotation,
            "was_cancelled": False,
            "lead_time": 3.2,
            "result": [
                {
                    "from_name": "label",
                    "to_name": "item",
                    "type": "choices",
                    "value": {"choices": [label]},
                }
            ],
        },
        "task": {
            "id": task or 1000 + row,
            "data": {
                "alpool_id": str(row),
                "alpool_workspace": token,
                "alpool_index": row,
                "text": "…",
            },
        },
        "project": {"id": 1, "title": "p"},
    }


def labels(ws: Path) -> dict[int, int]:
    with sqlite3.connect(ws / "alpool.db") as db:
        return dict(db.execute("SELECT idx, class FROM labels").fetchall())


def token_of(ws: Path) -> str:
    with sqlite3.connect(ws / "alpool.db") as db:
        return str(db.execute("SELECT value FROM meta WHERE key = 'token'").fetchone()[0])


def test_bad_requests_get_4xx_with_a_reason(cli: Path, tmp_path: Path) -> None:
    ws, y = make_workspace(cli, tmp_path / "a")
    s = Server(cli, ws, "--token", "s3cret", "--retrain-every", 0)
    try:
        with pytest.raises(HttpError) as e:
            call("GET", s.url + "/health")
        assert e.value.status == 401
        auth = {"Authorization": "Token s3cret"}
        health = call("GET", s.url + "/health", headers=auth)
        assert health["status"] == "UP" and health["model_version"] == f"alpool-{token_of(ws)}"
        basic = {"Authorization": "Basic " + base64.b64encode(b"label-studio:s3cret").decode()}
        assert call("GET", s.url + "/health", headers=basic)["status"] == "UP"
        token = token_of(ws)
        cases: list[tuple[str, Any, int, str]] = [
            ("/webhook", b"not json", 400, "valid JSON"),
            ("/webhook", {"annotation": {}}, 400, "no action"),
            ("/webhook", {**webhook(token, 5, "dog", 1)}, 422, "unknown class"),
            ("/webhook", webhook("other-workspace", 5, "ant", 1), 422, "belongs to workspace"),
            ("/webhook", webhook(token, 99999, "ant", 1), 422, "unknown item id"),
            ("/predict", {"tasks": "nope"}, 400, "tasks"),
            ("/predict", {"tasks": [{"id": 7, "data": {"text": "x"}}]}, 422, "Label Studio task 7"),
            ("/setup", {"schema": "<View><Text name='x' value='$t'/></View>"}, 400, "Choices"),
            ("/nowhere", {}, 404, "no route"),
        ]
        for path, body, status, needle in cases:
            with pytest.raises(HttpError) as e:
                s.post(path, body, auth)
            assert e.value.status == status and needle in e.value.body, (path, e.value)
        # Events it does not act on are acknowledged and ignored.
        out = s.post("/webhook", {"action": "TASKS_CREATED", "tasks": []}, auth)
        assert out["status"] == "ignored"
        # Still serving after all that.
        row = next(r for r in range(len(y)) if r not in labels(ws))
        ok = s.post("/webhook", webhook(token, row, CLASSES[y[row]], 1), auth)
        assert ok["labeled"] == 1
        assert labels(ws)[row] == y[row]
    finally:
        s.kill9()


def test_concurrent_webhooks_and_a_kill_9_lose_no_acknowledged_label(
    cli: Path, tmp_path: Path
) -> None:
    ws, y = make_workspace(cli, tmp_path / "a")
    token = token_of(ws)
    before = labels(ws)
    rows = [r for r in range(len(y)) if r not in before][:160]
    acked: set[int] = set()
    lock = threading.Lock()
    s = Server(cli, ws, "--retrain-every", 0)

    def send(part: list[int]) -> None:
        for r in part:
            try:
                s.post("/webhook", webhook(token, r, CLASSES[y[r]], 10_000 + r))
            except (OSError, HttpError):
                continue  # the server is gone: not acknowledged
            with lock:
                acked.add(r)

    threads = [threading.Thread(target=send, args=(rows[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    # Kill the server mid-stream.
    while True:
        with lock:
            if len(acked) >= 40:
                break
    s.kill9()
    for t in threads:
        t.join()
    stored = labels(ws)
    assert acked <= set(stored), "every acknowledged webhook is stored"
    assert all(stored[r] == y[r] for r in stored), "no wrong label"
    assert len(acked) < len(rows), "the kill landed mid-stream"

    # Restarted, the unacknowledged webhooks are sent again (and some
    # acknowledged ones too, as a retrying sender would): all stored once.
    s = Server(cli, ws, "--retrain-every", 0)
    try:
        for r in rows:
            s.post("/webhook", webhook(token, r, CLASSES[y[r]], 10_000 + r))
        stored = labels(ws)
        assert {r: stored[r] for r in rows} == {r: int(y[r]) for r in rows}
        with sqlite3.connect(ws / "alpool.db") as db:
            events = db.execute("SELECT COUNT(*) FROM label_events WHERE kind = 'label'").fetchone()
            votes = db.execute("SELECT COUNT(*) FROM votes").fetchone()
        assert events[0] == len(before) + len(rows), "one label event per item"
        assert votes[0] == len(rows), "one vote per annotation"
        status = alpool(cli, "status", ws).stdout
        assert f"{len(before) + len(rows)} labeled" in status
    finally:
        s.kill9()


def test_predictions_follow_the_newest_model(cli: Path, tmp_path: Path) -> None:
    ws, y = make_workspace(cli, tmp_path / "a")
    token = token_of(ws)
    s = Server(cli, ws, "--retrain-every", 0, "--strategy", "entropy")
    try:
        tasks = [
            {"id": r, "data": {"alpool_id": str(r), "alpool_workspace": token}}
            for r in range(30, 40)
        ]
        empty = s.post("/predict", {"tasks": tasks})
        assert empty["results"] == [], "no model yet: no predictions"
        s.post("/train", {})
        deadline = time.time() + 60
        while not (ws / "batches" / "next.json").exists() and time.time() < deadline:
            time.sleep(0.2)
        out = s.post("/predict", {"tasks": tasks})
        assert len(out["results"]) == len(tasks)
        # Entropy: Label Studio's score is minus the entropy, so its
        # ascending order puts the most uncertain first.
        scores = [r["score"] for r in out["results"]]
        assert all(sc <= 0 for sc in scores)
        batch = json.loads((ws / "batches" / "next.json").read_text())
        ls = [t["predictions"][0]["score"] for t in batch]
        assert ls == sorted(ls), "the batch's Label Studio scores ascend with alpool's rank"
    finally:
        s.kill9()
