"""The live queue at scale: a real Label Studio project (SQLite, as a
newcomer runs it) holding every item of a large workspace, re-ranked after a
training by `alpool serve --project`.

    python python/bench/bench_live.py [--items 100000] [--push-batch 2000] \
        [--fast-import] [--alpool target/release/alpool]

It starts Label Studio (from .venv-ls, or ALPOOL_LABEL_STUDIO) on
127.0.0.1, creates a project, and starts `serve`, which imports the items
as tasks and pushes round 0. Then ten annotations arrive by webhook and
`/train` retrains: the time from `/train` until the project serves round 1
is the full re-rank (train, score every unlabeled item, push, switch the
version), split as serve reports it: alpool's scoring and planning, and the
sending (Label Studio's import). Last, Label Studio's next task and the
first 100 of the "alpool: most informative first" tab are checked against
`next`'s batch of the same model.

`--fast-import` starts Label Studio with its memory-efficient prediction
import switched on (the feature flag
fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short, off
by default in 1.23): the default import refreshes counters of every task
of the project on each request, so its cost grows with the project.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python" / "tests"))

from studio import TOKEN, alpool, call, free_port, label_studio_binary, start_label_studio  # noqa: E402
from test_label_studio import make_workspace  # noqa: E402

FLAG = "fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short"


def wait_for(what: str, check: object, seconds: float) -> float:
    start = time.time()
    while time.time() - start < seconds:
        if check():  # type: ignore[operator]
            return time.time() - start
        time.sleep(0.25)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--push-batch", type=int, default=2000)
    ap.add_argument("--fast-import", action="store_true")
    ap.add_argument("--alpool", default=str(ROOT / "target" / "release" / "alpool"))
    a = ap.parse_args()
    cli = Path(a.alpool)
    binary = label_studio_binary()
    if binary is None:
        raise SystemExit("no Label Studio (install it into .venv-ls)")
    if a.fast_import:
        os.environ[FLAG] = "true"
    version = subprocess.run(
        [
            str(binary.parent / "python"),
            "-c",
            "import label_studio; print(label_studio.__version__)",
        ],
        capture_output=True,
        text=True,
    ).stdout.strip()
    folder = Path(tempfile.mkdtemp(prefix="alpool-bench-live-"))
    studio = start_label_studio(binary)
    server = None
    try:
        names = [f"c{c}" for c in range(a.classes)]
        ws, y = make_workspace(cli, folder, rows=a.items, classes=names, dim=32, per_class=3)
        config = alpool(cli, "labeling-config", ws).stdout
        project = studio.project("bench", config)
        port = free_port()
        log = open(folder / "serve.log", "w")  # noqa: SIM115
        t = time.time()
        server = subprocess.Popen(
            [str(cli), "serve", str(ws), "--port", str(port), "--project", str(project)]
            + ["--label-studio", studio.url, "--api-key", TOKEN, "--retrain-every", "0"]
            + ["--push-batch", str(a.push_batch), "-k", "100"],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        assert server.stdout is not None and "listening" in server.stdout.readline()
        connected = time.time() - t
        url = f"http://127.0.0.1:{port}"

        def serving(r: int) -> bool:
            live = call("GET", url + "/", timeout=60)["live"]
            return str(live["serving"]).endswith(f"-r{r}")

        first = wait_for("round 0", lambda: serving(0), 3600) + connected
        token = call("GET", url + "/", timeout=60)["model_version"].split("-")[1]
        rng = np.random.default_rng(1)
        for n, row in enumerate(rng.choice(a.items, 10, replace=False)):
            body = {
                "action": "ANNOTATION_CREATED",
                "annotation": {
                    "id": 10_000 + n,
                    "result": [
                        {
                            "from_name": "label",
                            "to_name": "item",
                            "type": "choices",
                            "value": {"choices": [f"c{y[row]}"]},
                        }
                    ],
                },
                "task": {
                    "id": 1,
                    "data": {
                        "alpool_id": str(row),
                        "alpool_workspace": token,
                        "alpool_index": int(row),
                    },
                },
            }
            call("POST", url + "/webhook", body, timeout=60)
        t = time.time()
        call("POST", url + "/train", {}, timeout=60)
        rerank = wait_for("round 1", lambda: serving(1), 3600)
        done = [
            line for line in (folder / "serve.log").read_text().splitlines() if "round 1:" in line
        ]
        m = re.search(
            r"scored in ([\d.]+) s, sent (\d+) in ([\d.]+) s, slowest request ([\d.]+) s", done[-1]
        )
        assert m, done
        plan, sent, send, slowest = float(m[1]), int(m[2]), float(m[3]), float(m[4])
        order = [
            t["data"]["alpool_index"] for t in json.loads((ws / "batches/next.json").read_text())
        ]
        views = studio.api("GET", f"/api/dm/views?project={project}")
        view = next(v for v in views if v["data"]["title"].startswith("alpool"))
        page = studio.api(
            "GET", f"/api/tasks?project={project}&view={view['id']}&page_size=100&fields=task_only"
        )
        tab = [t["data"]["alpool_index"] for t in page["tasks"]]
        nxt = studio.api("GET", f"/api/projects/{project}/next")["data"]["alpool_index"]
        kind = "memory-efficient" if a.fast_import else "default"
        print(f"Label Studio {version} (SQLite), {kind} prediction import")
        print(
            f"{a.items} items: serve connected (imported and listed every task) "
            f"in {connected:.1f} s; round 0 served after {first:.1f} s"
        )
        print(
            f"full re-rank after /train: {rerank:.1f} s end to end for {sent} predictions "
            f"({sent / rerank:.0f} tasks/s): scoring and planning {plan:.2f} s, "
            f"sending {send:.1f} s ({sent / send:.0f} predictions/s, {a.push_batch} per "
            f"request, slowest request {slowest:.1f} s)"
        )
        print(f"bound by: {'Label Studio import' if send > plan else 'alpool scoring'}")
        print(f"next task = alpool's first: {nxt == order[0]}")
        print(f"tab's first 100 = alpool's: {tab == order}")
    finally:
        if server is not None:
            server.kill()
            server.wait()
        studio.close()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
