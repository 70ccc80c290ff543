"""How many Label Studio annotation webhooks `alpool serve` stores a second,
and whether a kill -9 in the middle of the stream loses any it acknowledged.

    python python/bench/bench_webhooks.py [--items 2000] [--clients 8] \
        [--alpool target/release/alpool]

A workspace of `--items` items is created; `--clients` threads post one
ANNOTATION_CREATED webhook per item (the body Label Studio sends), each
acknowledged only after its SQLite transaction commits. The run is timed,
then repeated on a fresh workspace with the server killed (SIGKILL) half-way
and restarted, the senders retrying what was not acknowledged; the labels
stored are then checked one by one.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

CLASSES = ["ant", "bee", "cat"]


def port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def workspace(cli: str, folder: Path, items: int) -> tuple[Path, np.ndarray, str]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(items, 8)).astype(np.float32)
    y = rng.integers(0, 3, items)
    np.save(folder / "x.npy", x)
    ws = folder / "ws"
    subprocess.run(
        [cli, "init", str(ws), "--features", str(folder / "x.npy"), "--classes", ",".join(CLASSES)],
        check=True,
        capture_output=True,
    )
    with sqlite3.connect(ws / "alpool.db") as db:
        token = db.execute("SELECT value FROM meta WHERE key='token'").fetchone()[0]
    return ws, y, token


def start(cli: str, ws: Path) -> tuple[subprocess.Popen[str], str]:
    p = port()
    proc = subprocess.Popen(
        [cli, "serve", str(ws), "--port", str(p), "--retrain-every", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None and "listening" in proc.stdout.readline()
    return proc, f"http://127.0.0.1:{p}/webhook"


def body(token: str, row: int, label: str) -> bytes:
    return json.dumps(
        {
            "action": "ANNOTATION_CREATED",
            "annotation": {
                "id": row + 1,
                "was_cancelled": False,
                "result": [
                    {
                        "from_name": "label",
                        "to_name": "item",
                        "type": "choices",
                        "value": {"choices": [label]},
                    }
                ],
            },
            "task": {"id": row + 1, "data": {"alpool_id": str(row), "alpool_workspace": token}},
        }
    ).encode()


def post(url: str, data: bytes) -> bool:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status == 201
    except (OSError, urllib.error.HTTPError):
        return False


def send_all(
    urls: list[str],
    rows: list[int],
    y: np.ndarray,
    token: str,
    clients: int,
    acked: set[int],
    lock: threading.Lock,
) -> None:
    def work(part: list[int]) -> None:
        for r in part:
            if post(urls[0], body(token, r, CLASSES[y[r]])):
                with lock:
                    acked.add(r)

    threads = [threading.Thread(target=work, args=(rows[i::clients],)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def stored(ws: Path) -> dict[int, int]:
    with sqlite3.connect(ws / "alpool.db") as db:
        return dict(db.execute("SELECT idx, class FROM labels").fetchall())


def finish(proc: subprocess.Popen[str], ws: Path, y: np.ndarray) -> tuple[dict[int, int], int]:
    """Stops the server; the labels stored, and how many items are wrong or
    missing."""
    proc.kill()
    proc.wait()
    labels = stored(ws)
    return labels, sum(labels.get(r) != y[r] for r in range(len(y)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--alpool", default="target/release/alpool")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws, y, token = workspace(a.alpool, Path(tmp), a.items)
        proc, url = start(a.alpool, ws)
        acked: set[int] = set()
        t0 = time.perf_counter()
        send_all([url], list(range(a.items)), y, token, a.clients, acked, threading.Lock())
        dt = time.perf_counter() - t0
        labels, wrong = finish(proc, ws, y)
        # Only acknowledged webhooks count: a refused or failed one is not
        # throughput.
        print(
            f"{a.items} webhooks from {a.clients} clients in {dt:.2f} s: "
            f"{len(acked) / dt:.0f} acknowledged webhooks/s (target >= 50); "
            f"acknowledged {len(acked)} of {a.items}, "
            f"stored {len(labels)}, wrong or missing {wrong}"
        )
        if len(acked) < a.items:
            raise SystemExit(f"{a.items - len(acked)} webhooks were not acknowledged")

    with tempfile.TemporaryDirectory() as tmp:
        ws, y, token = workspace(a.alpool, Path(tmp), a.items)
        proc, url = start(a.alpool, ws)
        acked = set()
        lock = threading.Lock()
        urls = [url]
        sender = threading.Thread(
            target=send_all, args=(urls, list(range(a.items)), y, token, a.clients, acked, lock)
        )
        sender.start()
        while True:
            with lock:
                if len(acked) >= a.items // 2:
                    break
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        sender.join()
        at_kill = stored(ws)
        lost = [r for r in acked if r not in at_kill]
        proc, url = start(a.alpool, ws)
        retry = [r for r in range(a.items) if r not in acked]
        send_all([url], retry, y, token, a.clients, acked, lock)
        labels, wrong = finish(proc, ws, y)
        print(
            f"kill -9 after {len(at_kill)} stored: acknowledged but lost {len(lost)}; "
            f"after restart and {len(retry)} retries: stored {len(labels)} of {a.items}, "
            f"wrong or missing {wrong}"
        )


if __name__ == "__main__":
    main()
