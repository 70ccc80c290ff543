"""The live queue: `alpool serve --project` keeps a real Label Studio
project (installed from PyPI by .ci/run) re-ranked after every training.
Two retrains driven by annotations made in Label Studio, a kill -9 in the
middle of a push, Label Studio stopped while the model trains, and the
starts it must refuse."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from studio import (
    TOKEN,
    HttpError,
    Studio,
    alpool,
    call,
    free_port,
    require_label_studio,
    start_label_studio,
    stop,
)
from test_label_studio import (
    CLASSES,
    choice,
    make_multilabel_workspace,
    make_regression_workspace,
    make_workspace,
    number,
    set_names,
    stored_labels,
    stored_numbers,
    wait_for,
)
from test_serve import token_of, webhook


class Live:
    """`alpool serve --project` on a project of `studio`."""

    def __init__(
        self,
        cli: Path,
        ws: Path,
        studio: Studio,
        project: int,
        *extra: Any,
        env: dict | None = None,
    ) -> None:
        self.port = free_port()
        args = [str(cli), "serve", str(ws), "--port", str(self.port), "--project", str(project)]
        args += ["--label-studio", studio.url, "--api-key", TOKEN, *map(str, extra)]
        self.log = open(ws.parent / f"serve-{self.port}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={**os.environ, **(env or {})},
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        assert "listening" in line, (line, (ws.parent / f"serve-{self.port}.log").read_text())
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws = ws

    def live(self) -> dict[str, Any]:
        return dict(call("GET", self.url + "/", timeout=30)["live"])

    def push(self) -> dict[str, Any]:
        """The last push's state ({} before the first)."""
        return dict(self.live()["last_push"] or {})

    def serving(self, round_: int, seconds: float = 240) -> str:
        """Waits until the project serves round `round_`'s predictions."""
        version = f"alpool-{token_of(self.ws)}-r{round_}"
        wait_for(f"{version} served", lambda: self.live()["serving"] == version, seconds)
        return version

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def project_for(cli: Path, studio: Studio, ws: Path, title: str) -> int:
    return studio.project(title, alpool(cli, "labeling-config", ws).stdout)


def queue(studio: Studio, project: int, n: int = 100) -> list[int]:
    """The first `n` items of the tab "alpool: most informative first"."""
    views = studio.api("GET", f"/api/dm/views?project={project}")
    view = next(v for v in views if v["data"]["title"] == "alpool: most informative first")
    page = studio.api(
        "GET", f"/api/tasks?project={project}&view={view['id']}&page_size={n}&fields=task_only"
    )
    return [t["data"]["alpool_index"] for t in page["tasks"]]


def batch_order(ws: Path) -> list[int]:
    """The last round's batch as `next` picked it."""
    return [t["data"]["alpool_index"] for t in json.loads((ws / "batches/next.json").read_text())]


def counts(studio: Studio, project: int) -> dict[str, int]:
    return dict(studio.api("GET", f"/api/projects/{project}/model-versions"))


def skipped(ws: Path) -> set[int]:
    with sqlite3.connect(ws / "alpool.db") as db:
        rows = db.execute("SELECT idx FROM skips WHERE idx NOT IN (SELECT idx FROM labels)")
        return {r[0] for r in rows}


def queued(ws: Path, items: int = 240) -> int:
    """Items the queue holds: unlabeled, not skipped."""
    return items - len(stored_labels(ws)) - len(skipped(ws))


def check_round(studio: Studio, project: int, server: Live, round_: int) -> None:
    """The project serves round `round_`: its model_version, exactly one
    prediction of it per unlabeled item, Label Studio's next task and the
    tab's first 100 in alpool's order."""
    version = server.serving(round_)
    assert studio.api("GET", f"/api/projects/{project}")["model_version"] == version
    assert counts(studio, project)[version] == queued(server.ws), "one prediction per item"
    order = batch_order(server.ws)
    assert len(order) == 100
    assert queue(studio, project) == order, "the tab's order is alpool's"
    nxt = studio.api("GET", f"/api/projects/{project}/next")
    assert nxt["data"]["alpool_index"] == order[0], "the next task is the most informative"


def served_round(
    studio: Studio, project: int, server: Live, round_: int, tasks: dict[int, int]
) -> tuple[str, list[int], dict[str, Any]]:
    """The project of a 160-item workspace serves round `round_` (batches
    of 50): its model_version, one prediction of it per unlabeled item, and
    the tab's first 50 in the batch's order. Returns the version, the
    batch's order and the prediction of its first task."""
    version = server.serving(round_)
    assert studio.api("GET", f"/api/projects/{project}")["model_version"] == version
    left = 160 - len(stored_labels(server.ws))
    assert counts(studio, project)[version] == left, "one prediction per item"
    order = batch_order(server.ws)
    assert len(order) == 50
    assert queue(studio, project, 50) == order, "the tab's order is alpool's"
    shown = studio.api("GET", f"/api/tasks/{tasks[order[0]]}")["predictions"]
    current = [p for p in shown if p["model_version"] == version]
    assert len(current) == 1, shown
    return version, order, dict(current[0])


def predicted_as_pushed(
    studio: Studio, server: Live, tasks: dict[int, int], version: str
) -> list[float]:
    """The ML backend's /predict of the batch's first five tasks: the
    results the live queue pushed under `version`, and scores that ascend
    in the queue's order (returned)."""
    rows = batch_order(server.ws)[:5]
    token = token_of(server.ws)
    body = {
        "tasks": [
            {"id": tasks[r], "data": {"alpool_id": str(r), "alpool_workspace": token}} for r in rows
        ]
    }
    out = call("POST", server.url + "/predict", body)["results"]
    pushed = []
    for r in rows:
        preds = studio.api("GET", f"/api/tasks/{tasks[r]}")["predictions"]
        pushed += [p for p in preds if p["model_version"] == version]
    scores = [float(o["score"]) for o in out]
    assert scores == sorted(scores), scores
    assert [o["result"] for o in out] == [p["result"] for p in pushed]
    return scores


def test_the_queue_follows_each_training(cli: Path, studio: Studio, tmp_path: Path) -> None:
    ws, y = make_workspace(cli, tmp_path / "a", seed=5)
    project = project_for(cli, studio, ws, "live")
    server = Live(
        cli,
        ws,
        studio,
        project,
        "--retrain-every",
        6,
        "-k",
        100,
        "--push-batch",
        64,
        "--keep-versions",
        2,
    )
    try:
        tasks = {t["data"]["alpool_index"]: t["id"] for t in studio.tasks(project)}
        assert sorted(tasks) == list(range(240)), "every item imported once"
        hooks = studio.api("GET", f"/api/webhooks?project={project}")
        assert [h["url"] for h in hooks] == [f"{server.url}/webhook"]
        assert studio.api("GET", f"/api/projects/{project}")["sampling"] == "Uncertainty sampling"
        check_round(studio, project, server, 0)
        versions = [server.serving(0)]
        for round_ in (1, 2):
            # The annotator skips the first of the queue, then labels the
            # next six in Label Studio.
            first, *six = queue(studio, project, 7)
            studio.annotate(tasks[first], [], cancelled=True)
            wait_for("the skip", lambda first=first: first in skipped(ws))
            for row in six:
                studio.annotate(tasks[row], [choice(CLASSES[y[row]])])
            check_round(studio, project, server, round_)
            assert first not in queue(studio, project, 240), "a skipped item leaves the queue"
            versions.append(server.serving(round_))
            # The two newest trainings' predictions stay; older ones go.
            kept = {v: n for v, n in zip(versions, (228, 221, 214)) if v in versions[-2:]}
            wait_for(f"only {sorted(kept)} kept", lambda kept=kept: counts(studio, project) == kept)
        assert len(set(versions)) == 3, versions
        status = alpool(cli, "status", ws).stdout
        assert f"serving {versions[-1]}" in status and "done, 214 of 214" in status, status
        # A browser at / gets the workspace's report page, with the queue.
        page = call("GET", server.url + "/", headers={"Accept": "text/html"}, raw=True)
        (tmp_path / "page.html").write_bytes(page)
    finally:
        server.stop()
    dom = render(tmp_path / "page.html")
    if dom is not None:
        assert 'data-rendered="ok"' in dom, dom[-2000:]
        assert f'data-serving="{versions[-1]}"' in dom
        assert '<tr data-state="done">' in dom and "214 of 214" in dom


def test_kill9_mid_push_then_restart(cli: Path, studio: Studio, tmp_path: Path) -> None:
    ws, _ = make_workspace(cli, tmp_path / "a", seed=6)
    project = project_for(cli, studio, ws, "kill -9")
    # Three seconds after every request of 40 predictions.
    slow = Live(cli, ws, studio, project, "--push-batch", 40, env={"ALPOOL_PAUSE_AT": "push-batch"})
    try:
        wait_for(
            "a push under way", lambda: (slow.live()["last_push"] or {}).get("pushed", 0) >= 80
        )
        slow.proc.send_signal(signal.SIGKILL)
        slow.proc.wait()
    finally:
        slow.stop()
    version = f"alpool-{token_of(ws)}-r0"
    partial = counts(studio, project).get(version, 0)
    assert 80 <= partial < 228 and partial % 40 == 0, partial
    status = alpool(cli, "status", ws).stdout
    assert "pushing" in status, status

    server = Live(cli, ws, studio, project, "-k", 100, "--push-batch", 40)
    try:
        check_round(studio, project, server, 0)
        assert server.live()["last_push"]["attempts"] == 0
    finally:
        server.stop()
    log = (ws.parent / f"serve-{server.port}.log").read_text()
    assert "importing" not in log, "the tasks were imported once"


def last_planned(ws: Path, version: str) -> int:
    """The task of the last prediction planned for `version`."""
    with sqlite3.connect(ws / "alpool.db") as db:
        sql = "SELECT task FROM studio_plan WHERE version = ? ORDER BY seq DESC LIMIT 1"
        return int(db.execute(sql, (version,)).fetchone()[0])


def test_tasks_deleted_while_serving_come_back(cli: Path, studio: Studio, tmp_path: Path) -> None:
    """A task deleted in Label Studio in the middle of a push, and two
    deleted between trainings: each item comes back as a new task with one
    current prediction, and the older training's predictions are deleted."""
    ws, y = make_workspace(cli, tmp_path / "a", seed=8)
    project = project_for(cli, studio, ws, "deleted tasks")
    # Three seconds after every request of 40 predictions.
    server = Live(
        cli,
        ws,
        studio,
        project,
        "--retrain-every",
        6,
        "-k",
        100,
        "--push-batch",
        40,
        "--keep-versions",
        1,
        env={"ALPOOL_PAUSE_AT": "push-batch"},
    )
    try:
        v0 = f"alpool-{token_of(ws)}-r0"
        wait_for("a push under way", lambda: server.push().get("pushed", 0) >= 40)
        gone = last_planned(ws, v0)
        studio.api("DELETE", f"/api/tasks/{gone}")
        check_round(studio, project, server, 0)
        assert server.push()["attempts"] >= 1, "the request naming the deleted task failed"
        tasks = {t["data"]["alpool_index"]: t["id"] for t in studio.tasks(project)}
        assert sorted(tasks) == list(range(240)) and gone not in tasks.values()

        first, second, *six = queue(studio, project, 8)
        deleted = [tasks[first], tasks[second]]
        for task in deleted:
            studio.api("DELETE", f"/api/tasks/{task}")
        for row in six:
            studio.annotate(tasks[row], [choice(CLASSES[y[row]])])
        check_round(studio, project, server, 1)
        tasks = {t["data"]["alpool_index"]: t["id"] for t in studio.tasks(project)}
        assert sorted(tasks) == list(range(240)), "every item has one task"
        assert not set(deleted) & set(tasks.values()), "the deleted items are new tasks"
        v1 = server.serving(1)
        wait_for("r0 deleted", lambda: counts(studio, project) == {v1: queued(ws)})
        log = ws.parent / f"serve-{server.port}.log"
        wait_for("the deletion said", lambda: f"predictions of {v0}, an older" in log.read_text())
    finally:
        server.stop()
    said = log.read_text()
    assert "importing 1 of the workspace's 240 items" in said, said
    assert "importing 2 of the workspace's 240 items" in said, said


def test_label_studio_down_while_training(cli: Path, tmp_path: Path) -> None:
    binary = require_label_studio()
    studio = start_label_studio(binary)
    try:
        ws, y = make_workspace(cli, tmp_path / "a", seed=7)
        # Imported by a person, from `alpool tasks`: serve imports nothing.
        tasks_file = tmp_path / "tasks.json"
        assert "wrote 240 tasks" in alpool(cli, "tasks", ws, "--out", tasks_file).stdout
        project = project_for(cli, studio, ws, "down")
        studio.import_tasks(project, json.loads(tasks_file.read_text()))
        server = Live(cli, ws, studio, project, "--retrain-every", 4, "-k", 100)
        try:
            check_round(studio, project, server, 0)
            port = int(studio.url.rsplit(":", 1)[1])
            assert studio.proc is not None
            stop(studio.proc)
            # Annotations keep coming (as a webhook, while the server is
            # down): each is acknowledged and stored, and round 1 trains.
            token = token_of(ws)
            rows = batch_order(ws)[:4]
            for n, row in enumerate(rows):
                answer = call(
                    "POST", server.url + "/webhook", webhook(token, row, CLASSES[y[row]], 900 + n)
                )
                assert answer["status"] == "ok", answer
            assert set(rows) <= set(stored_labels(ws))
            wait_for(
                "a failed push", lambda: (server.live()["last_push"] or {}).get("attempts", 0) >= 1
            )
            failed = server.push()
            assert failed["round"] == 1 and failed["state"] == "pushing", failed
            assert "no answer" in failed["error"], failed
            status = alpool(cli, "status", ws).stdout
            assert "failed attempts" in status, status

            studio = start_label_studio(binary, port=port, data=studio.data)
            # The annotations made while it was down are in the workspace,
            # not in Label Studio: the queue leaves them out all the same.
            version = server.serving(1)
            assert counts(studio, project)[version] == 240 - len(stored_labels(ws))
            assert queue(studio, project) == batch_order(ws)
            assert server.live()["last_push"]["error"] is None
        finally:
            server.stop()
        log = (ws.parent / f"serve-{server.port}.log").read_text()
        assert "importing" not in log, log
    finally:
        studio.close()


def render(page: Path) -> str | None:
    """The page after its scripts ran in headless Chromium (from the Debian
    packages), or None without one (a failure under CI)."""
    browser = Path(os.environ.get("ALPOOL_CHROMIUM", "/usr/bin/chromium"))
    if not browser.exists():
        if os.environ.get("ALPOOL_REQUIRE_BROWSER") == "1" or os.environ.get("CI") == "true":
            pytest.fail(f"no browser at {browser}")
        print("!!!!!! SKIPPING the browser check: no Chromium !!!!!!")
        return None
    profile = page.parent / "chromium-profile"
    args = [str(browser), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"]
    args += [f"--user-data-dir={profile}", f"file://{page}"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def digest(ws: Path) -> str:
    return hashlib.sha256((ws / "alpool.db").read_bytes()).hexdigest()


def refused(cli: Path, ws: Path, studio: Studio, project: int, key: str = TOKEN) -> str:
    port = free_port()
    args = ["serve", ws, "--port", port, "--project", project]
    r = alpool(cli, *args, "--label-studio", studio.url, "--api-key", key, check=False)
    assert r.returncode != 0 and "listening" not in r.stdout, r
    with pytest.raises(OSError):
        call("GET", f"http://127.0.0.1:{port}/health", timeout=2)
    return r.stderr


def test_a_drawn_queue_follows_the_draw(cli: Path, studio: Studio, tmp_path: Path) -> None:
    """`serve --stochastic power`: Label Studio's queue starts with the
    batch `next --stochastic power` draws from the same labels (on a copy
    of the workspace), not with the plain top k."""
    ws, _ = make_workspace(cli, tmp_path / "a", seed=8)
    draw = ["--stochastic", "power", "--beta", "2"]
    batches = {}
    for name, extra in (("drawn", draw), ("plain", [])):
        copy = tmp_path / name / "ws"
        shutil.copytree(ws, copy)
        alpool(cli, "next", copy, "-k", 100, "--out", tmp_path / f"{name}.json", *extra)
        batches[name] = [
            t["data"]["alpool_index"] for t in json.loads((tmp_path / f"{name}.json").read_text())
        ]
    assert batches["drawn"] != batches["plain"], "a draw, not the top k"
    project = project_for(cli, studio, ws, "drawn")
    server = Live(cli, ws, studio, project, "--retrain-every", 0, "-k", 100, *draw)
    try:
        check_round(studio, project, server, 0)
        assert queue(studio, project) == batches["drawn"], "the queue is the draw"
    finally:
        server.stop()


def test_starts_it_refuses(cli: Path, studio: Studio, tmp_path: Path) -> None:
    ws, _ = make_workspace(cli, tmp_path / "a", seed=8)
    other, _ = make_workspace(cli, tmp_path / "b", seed=9)
    before = digest(ws)
    project = project_for(cli, studio, ws, "refusals")

    err = refused(cli, ws, studio, project, key="wrong-key")
    assert "API key was refused" in err and "HTTP 401" in err, err
    err = refused(cli, ws, studio, 999_999)
    assert "project 999999 does not exist" in err, err

    # A task that is no item of this workspace, and one of another.
    foreign = project_for(cli, studio, ws, "foreign")
    studio.import_tasks(foreign, [{"data": {"text": "hello"}}])
    err = refused(cli, ws, studio, foreign)
    assert "is not an item of this workspace (it carries no alpool_workspace)" in err, err
    theirs = project_for(cli, studio, ws, "theirs")
    alpool(cli, "tasks", other, "--out", tmp_path / "b.json")
    studio.import_tasks(theirs, json.loads((tmp_path / "b.json").read_text())[:3])
    err = refused(cli, ws, studio, theirs)
    assert f"belongs to workspace {token_of(other)}" in err, err

    # A config without alpool's control.
    plain = studio.project("plain", '<View><Text name="t" value="$text"/></View>')
    err = refused(cli, ws, studio, plain)
    assert "labeling config needs <Choices" in err, err

    assert digest(ws) == before, "the workspace is untouched"
    for p in (project, foreign, theirs, plain):
        assert studio.api("GET", f"/api/ml?project={p}") == []
    assert studio.tasks(project) == [] and len(studio.tasks(theirs)) == 3
    with pytest.raises(HttpError):
        studio.api("GET", "/api/projects/999999")


def test_a_multilabel_queue_follows_each_training(
    cli: Path, studio: Studio, tmp_path: Path
) -> None:
    """A multi-label workspace served live: the tasks' predictions are the
    model's predicted sets, the queue is `next`'s adaptive order, and sets
    ticked in Label Studio arrive by webhook as labels and retrain it."""
    ws, truth = make_multilabel_workspace(cli, tmp_path / "m", seed=11, rows=160, labeled=24)
    project = project_for(cli, studio, ws, "live multi-label")
    server = Live(cli, ws, studio, project, "--retrain-every", 6, "-k", 50, "--hidden", 8)
    try:
        tasks = {t["data"]["alpool_index"]: t["id"] for t in studio.tasks(project)}
        assert sorted(tasks) == list(range(160)), "every item imported once"
        for round_ in (0, 1):
            version, order, first = served_round(studio, project, server, round_, tasks)
            ticked = first["result"][0]["value"]["choices"]
            assert set(ticked) <= set(CLASSES), "a prediction is a set of classes"
            if round_ == 0:
                # Six sets ticked in Label Studio: each is the item's label.
                six = order[:6]
                for row in six:
                    studio.annotate(tasks[row], [choice(*set_names(truth, row))])
                mask = {r: sum(1 << j for j, on in enumerate(truth[r]) if on) for r in six}
                wait_for("the sets", lambda six=six: set(six) <= set(stored_labels(ws)))
                labels = stored_labels(ws)
                assert all(labels[r] == mask[r] for r in six), (labels, mask)
        # The ML backend's /predict: the pushed sets, and scores (minus
        # the strategy's) that ascend in the queue's order.
        predicted_as_pushed(studio, server, tasks, version)
    finally:
        server.stop()


def test_a_regression_queue_follows_each_training(
    cli: Path, studio: Studio, tmp_path: Path
) -> None:
    """A regression workspace served live, by the spread of the round's
    MC-dropout passes: the tasks' predictions are the model's numbers, the
    queue is `next`'s std order, and numbers typed in Label Studio arrive by
    webhook as labels and retrain it."""
    ws, truth = make_regression_workspace(cli, tmp_path / "r", seed=7, rows=160, labeled=20)
    project = project_for(cli, studio, ws, "live regression")
    mc = ("--mc-samples", 8, "--dropout", 0.2, "--hidden", 16)
    server = Live(cli, ws, studio, project, "--retrain-every", 6, "-k", 50, *mc)
    try:
        tasks = {t["data"]["alpool_index"]: t["id"] for t in studio.tasks(project)}
        assert sorted(tasks) == list(range(160)), "every item imported once"
        for round_ in (0, 1):
            version, order, first = served_round(studio, project, server, round_, tasks)
            nxt = studio.api("GET", f"/api/projects/{project}/next")
            assert nxt["data"]["alpool_index"] == order[0], "the widest spread comes next"
            assert isinstance(first["result"][0]["value"]["number"], float), first
            if round_ == 0:
                six = order[:6]
                for row in six:
                    studio.annotate(tasks[row], [number(float(truth[row]))])
                wait_for("the numbers", lambda six=six: set(six) <= set(stored_labels(ws)))
                numbers = stored_numbers(ws)
                assert all(numbers[r] == float(truth[r]) for r in six), numbers
        # The ML backend's /predict: the pushed numbers, and scores (minus
        # each item's std) that ascend in the queue's order.
        scores = predicted_as_pushed(studio, server, tasks, version)
        assert scores[0] < 0, scores
    finally:
        server.stop()
