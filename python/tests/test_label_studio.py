"""alpool with a real Label Studio server (installed from PyPI by .ci/run):
batches imported as tasks, annotated through Label Studio's API in every
awkward way people annotate, exported in every shape Label Studio offers,
ingested — and never a wrong label stored. Then the ML backend: Label Studio
connected to `alpool serve`, asking it for predictions and sending it every
annotation by webhook."""

from __future__ import annotations

import json
import shutil
import sqlite3
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from studio import Studio, alpool, free_port

CLASSES = ["ant", "bee", "cat"]


def make_workspace(
    cli: Path,
    folder: Path,
    seed: int = 0,
    rows: int = 240,
    classes: list[str] = CLASSES,
    dim: int = 6,
    per_class: int = 4,
) -> tuple[Path, np.ndarray]:
    """A workspace of separable classes (three in 6 features by default),
    `per_class` seed labels each, and text data; ids are the row numbers,
    the default that collides with Label Studio's own task ids."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    c = len(classes)
    y = rng.integers(0, c, rows)
    x = rng.normal(size=(rows, dim)).astype(np.float32)
    x[:, :c] += 3.0 * np.eye(c, dtype=np.float32)[y]
    np.save(folder / "x.npy", x)
    seed_rows = [int(np.flatnonzero(y == k)[i]) for k in range(c) for i in range(per_class)]
    (folder / "seed.csv").write_text(
        "id,label\n" + "".join(f"{r},{classes[y[r]]}\n" for r in seed_rows)
    )
    with open(folder / "items.jsonl", "w") as f:
        for r in range(len(y)):
            f.write(json.dumps({"id": str(r), "text": f"item number {r}"}) + "\n")
    ws = folder / "ws"
    alpool(
        cli,
        "init",
        ws,
        "--features",
        folder / "x.npy",
        "--classes",
        ",".join(classes),
        "--labels",
        folder / "seed.csv",
        "--data",
        folder / "items.jsonl",
    )
    return ws, y


def set_names(truth: np.ndarray, row: int) -> list[str]:
    return [c for c, on in zip(CLASSES, truth[row]) if on]


def make_multilabel_workspace(
    cli: Path, folder: Path, seed: int, rows: int, labeled: int
) -> tuple[Path, np.ndarray]:
    """A multi-label workspace of `rows` items in 3 features whose classes
    ant, bee and cat are x0 > 0, x1 > 0 and x2 > 0.5 (any number of them
    per item), the first `labeled` items seeded with their sets."""
    folder.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(seed).normal(size=(rows, 3)).astype(np.float32)
    truth = np.stack([x[:, 0] > 0, x[:, 1] > 0, x[:, 2] > 0.5], axis=1)
    np.save(folder / "x.npy", x)
    (folder / "seed.csv").write_text(
        "id,label\n" + "".join(f"{r},{'|'.join(set_names(truth, r))}\n" for r in range(labeled))
    )
    ws = folder / "ws"
    alpool(cli, "init", ws, "--features", folder / "x.npy", "--classes", ",".join(CLASSES),
           "--multilabel", "--labels", folder / "seed.csv")  # fmt: skip
    return ws, truth


def make_regression_workspace(
    cli: Path, folder: Path, seed: int, rows: int, labeled: int
) -> tuple[Path, np.ndarray]:
    """A regression workspace of `rows` items in 3 features whose target
    "yield" is 10 + 3 x0 - x1², rounded to 3 decimals, the first `labeled`
    items seeded with their numbers."""
    folder.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(seed).normal(size=(rows, 3)).astype(np.float32)
    truth = np.round(10 + 3 * x[:, 0] - x[:, 1] ** 2, 3)
    np.save(folder / "x.npy", x)
    (folder / "seed.csv").write_text(
        "id,label\n" + "".join(f"{r},{truth[r]}\n" for r in range(labeled))
    )
    ws = folder / "ws"
    alpool(cli, "init", ws, "--features", folder / "x.npy", "--regression", "yield",
           "--labels", folder / "seed.csv")  # fmt: skip
    return ws, truth


def ingested_exports(
    cli: Path, studio: Studio, project: int, ws: Path, folder: Path, prefix: str
) -> Iterator[tuple[str, Path, Path, str]]:
    """Each export shape of `project`, ingested into its own copy of `ws`
    (`{prefix}ws-{shape}`): the shape, the export, the copy, what ingest
    printed."""
    for kind, ext in [("JSON", "json"), ("JSON_MIN", "json"), ("CSV", "csv"), ("TSV", "tsv")]:
        export = folder / f"{prefix}export-{kind}.{ext}"
        export.write_bytes(studio.export(project, kind))
        copy = folder / f"{prefix}ws-{kind}"
        shutil.copytree(ws, copy)
        yield kind, export, copy, alpool(cli, "ingest", copy, export).stdout


def stored_labels(ws: Path) -> dict[int, int]:
    with sqlite3.connect(ws / "alpool.db") as db:
        return dict(db.execute("SELECT idx, class FROM labels").fetchall())


def open_conflicts(ws: Path) -> set[int]:
    with sqlite3.connect(ws / "alpool.db") as db:
        rows = db.execute("SELECT idx FROM conflicts WHERE resolved IS NULL").fetchall()
    return {r[0] for r in rows}


def choice(*names: str, control: str = "label") -> dict[str, Any]:
    return {
        "from_name": control,
        "to_name": "item",
        "type": "choices",
        "value": {"choices": list(names)},
    }


# Lets annotators tick several classes, comment, and rate quality: the
# situations alpool must not turn into a label by accident.
LOOSE_CONFIG = """<View>
  <Text name="item" value="$text"/>
  <Choices name="label" toName="item" choice="multiple">
    <Choice value="ant"/><Choice value="bee"/><Choice value="cat"/>
  </Choices>
  <Choices name="quality" toName="item"><Choice value="good"/><Choice value="bad"/></Choices>
  <TextArea name="comment" toName="item"/>
</View>"""


def test_every_export_shape_stores_no_wrong_label(
    cli: Path, studio: Studio, tmp_path: Path
) -> None:
    ws, y = make_workspace(cli, tmp_path / "a")
    batch = tmp_path / "tasks.json"
    alpool(cli, "next", ws, "-k", 14, "--out", batch)
    tasks = json.loads(batch.read_text())
    token = tasks[0]["data"]["alpool_workspace"]
    assert all(t["data"]["text"].startswith("item number") for t in tasks), "item data travels"

    # The config alpool prints is one Label Studio accepts for these tasks.
    config = alpool(cli, "labeling-config", ws).stdout
    strict = studio.project("alpool strict", config)
    studio.import_tasks(strict, tasks)
    assert len(studio.tasks(strict)) == len(tasks)

    project = studio.project("alpool loose", LOOSE_CONFIG)
    studio.import_tasks(project, tasks)
    by_row = {t["data"]["alpool_index"]: t for t in studio.tasks(project)}
    rows = [t["data"]["alpool_index"] for t in tasks]
    truth = {r: CLASSES[y[r]] for r in rows}
    wrong = {r: CLASSES[(y[r] + 1) % 3] for r in rows}
    r = rows
    ann = studio.annotate
    ann(by_row[r[0]]["id"], [choice(truth[r[0]])])  # plain
    ann(by_row[r[1]]["id"], [choice(truth[r[1]])])  # two annotators
    ann(by_row[r[1]]["id"], [choice(wrong[r[1]])])  # ... disagree
    for c in (truth[r[2]], truth[r[2]], wrong[r[2]]):  # 2 of 3 agree
        ann(by_row[r[2]]["id"], [choice(c)])
    ann(by_row[r[3]]["id"], [choice(truth[r[3]], wrong[r[3]])])  # two ticked
    ann(by_row[r[4]]["id"], [], cancelled=True)  # skipped
    ann(by_row[r[5]]["id"], [])  # empty submit
    ann(
        by_row[r[6]]["id"],
        [
            choice(truth[r[6]]),  # with a comment
            {
                "from_name": "comment",
                "to_name": "item",
                "type": "textarea",
                "value": {"text": ["blurry"]},
            },
        ],
    )
    ann(by_row[r[7]]["id"], [choice("good", control="quality")])  # another control
    studio.api("DELETE", f"/api/tasks/{by_row[r[8]]['id']}")  # deleted
    for i in (9, 10):  # plain
        ann(by_row[r[i]]["id"], [choice(truth[r[i]])])

    before = stored_labels(ws)
    for kind, export, copy, out in ingested_exports(cli, studio, project, ws, tmp_path, ""):
        labels = stored_labels(copy)
        new = {row: c for row, c in labels.items() if row not in before}
        assert set(new) == {r[0], r[2], r[6], r[9], r[10]}, (kind, out, new)
        assert all(CLASSES[c] == truth[row] for row, c in new.items()), (kind, "a wrong label")
        assert all(labels[row] == c for row, c in before.items()), (kind, "seed labels changed")
        assert open_conflicts(copy) == {r[1], r[3]}, (kind, out)
        assert "5 new labels" in out and "2 conflicts" in out, (kind, out)
        # Empty: the empty submit and the annotation with only a quality
        # rating. JSON_MIN, CSV and TSV leave skipped tasks out; with the
        # deleted task and the three never annotated, they are counted as
        # missing from round 0's batch.
        assert "2 submitted empty" in out, (kind, out)
        if kind == "JSON":
            assert "1 skipped, 2 submitted empty" in out, out
            assert "2 results of other controls ignored" in out, out
            assert "round 0: 4 of its 14 items" in out, out
        else:
            assert "round 0: 5 of its 14 items" in out, (kind, out)

        # The same export again: a clean no-op.
        again = alpool(cli, "ingest", copy, export).stdout
        assert "0 new labels, 5 unchanged" in again, (kind, again)
        assert stored_labels(copy) == labels

    # What the workspace remembers after the full JSON export: the skipped
    # item is not selected again, and status lists the open conflicts.
    full = tmp_path / "ws-JSON"
    status = alpool(cli, "status", full).stdout
    assert "open conflicts, kept apart (2;" in status and "skipped by annotators" in status, status
    nxt = tmp_path / "next.json"
    alpool(cli, "next", full, "-k", 200, "--out", nxt)
    picked = {t["data"]["alpool_index"] for t in json.loads(nxt.read_text())}
    assert r[4] not in picked and r[5] not in picked and r[1] in picked
    alpool(cli, "next", full, "-k", 200, "--reselect-skipped", "--out", nxt)
    picked = {t["data"]["alpool_index"] for t in json.loads(nxt.read_text())}
    assert r[4] in picked

    # One model_version per workspace: round 1's predictions show next to
    # round 0's.
    versions = {t["predictions"][0]["model_version"] for t in json.loads(nxt.read_text())}
    assert versions == {f"alpool-{token}"}


def test_exports_of_another_workspace_or_only_skips(
    cli: Path, studio: Studio, tmp_path: Path
) -> None:
    ws_a, _ = make_workspace(cli, tmp_path / "a", seed=1)
    ws_b, y_b = make_workspace(cli, tmp_path / "b", seed=2)
    batch_b = tmp_path / "b.json"
    alpool(cli, "next", ws_b, "-k", 5, "--out", batch_b)
    project = studio.project("other workspace", LOOSE_CONFIG)
    studio.import_tasks(project, json.loads(batch_b.read_text()))
    tasks = studio.tasks(project)
    for t in tasks:
        studio.annotate(t["id"], [choice(CLASSES[y_b[t["data"]["alpool_index"]]])])
    before = stored_labels(ws_a)
    for kind, ext in [("JSON", "json"), ("JSON_MIN", "json"), ("CSV", "csv")]:
        export = tmp_path / f"b-{kind}.{ext}"
        export.write_bytes(studio.export(project, kind))
        r = alpool(cli, "ingest", ws_a, export, check=False)
        assert r.returncode == 1 and "belongs to workspace" in r.stderr, (kind, r.stderr)
        assert "Label Studio task" in r.stderr, r.stderr
    assert stored_labels(ws_a) == before

    # Every task skipped: a no-op that says what it saw, exit 0.
    batch_a = tmp_path / "a.json"
    alpool(cli, "next", ws_a, "-k", 4, "--out", batch_a)
    skipped = studio.project("all skipped", LOOSE_CONFIG)
    studio.import_tasks(skipped, json.loads(batch_a.read_text()))
    for t in studio.tasks(skipped):
        studio.annotate(t["id"], [], cancelled=True)
    for kind, ext in [("JSON", "json"), ("JSON_MIN", "json"), ("CSV", "csv")]:
        export = tmp_path / f"skipped-{kind}.{ext}"
        export.write_bytes(studio.export(skipped, kind))
        r = alpool(cli, "ingest", ws_a, export, check=False)
        assert r.returncode == 0, (kind, r.stderr)
        assert "0 new labels" in r.stdout, r.stdout
    assert stored_labels(ws_a) == before


def wait_for(what: str, check: Any, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_ml_backend_full_cycle(cli: Path, studio: Studio, tmp_path: Path) -> None:
    ws, y = make_workspace(cli, tmp_path / "a", seed=3)
    batch = tmp_path / "tasks.json"
    alpool(cli, "next", ws, "-k", 30, "--out", batch)
    tasks = json.loads(batch.read_text())
    for t in tasks:
        t.pop("predictions")  # Label Studio asks the backend for them.
    port = free_port()
    server = subprocess.Popen(
        [str(cli), "serve", str(ws), "--port", str(port), "--retrain-every", "8", "-k", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stdout.readline() if server.stdout else ""
        assert "listening on http://127.0.0.1:" in line, line
        config = alpool(cli, "labeling-config", ws).stdout
        project = studio.project("ml backend", config)
        studio.api(
            "POST",
            "/api/ml",
            {"url": f"http://127.0.0.1:{port}", "project": project, "title": "alpool"},
        )
        studio.import_tasks(project, tasks)
        studio.api(
            "POST",
            f"/api/dm/actions?id=retrieve_tasks_predictions&project={project}",
            {"selectedItems": {"all": True, "excluded": []}},
        )
        listed = studio.tasks(project)
        preds = [p for t in listed for p in t.get("predictions", [])]
        assert len(preds) == len(tasks), "a prediction for every task"
        assert all(isinstance(p["score"], float) for p in preds)
        # Label Studio serves the lowest score first: that is alpool's order.
        first = min(listed, key=lambda t: t["predictions"][0]["score"])
        assert first["data"]["alpool_rank"] == 1

        # Annotations arrive by webhook and are stored as they come.
        before = stored_labels(ws)
        annotated = listed[:20]
        for t in annotated:
            studio.annotate(t["id"], [choice(CLASSES[y[t["data"]["alpool_index"]]])])
        rows = {t["data"]["alpool_index"] for t in annotated}
        wait_for("labels from webhooks", lambda: rows <= set(stored_labels(ws)))
        labels = stored_labels(ws)
        assert all(labels[r] == y[r] for r in rows), "no wrong label"
        assert len(labels) == len(before) + len(rows)
        # 20 new labels with --retrain-every 8: a round was trained.
        wait_for("a retrain", lambda: (ws / "batches" / "next.json").exists())
        status = alpool(cli, "status", ws).stdout
        assert "rounds: 2" in status or "rounds: 3" in status, status
    finally:
        server.kill()
        server.wait()


def test_multilabel_sets_through_every_export_shape(
    cli: Path, studio: Studio, tmp_path: Path
) -> None:
    """A multi-label workspace: the labeling config lets annotators tick
    several classes, each ticked set is the item's label (an empty submit:
    none applies), and annotators who tick different sets are a conflict."""
    folder = tmp_path / "m"
    ws, truth = make_multilabel_workspace(cli, folder, seed=3, rows=200, labeled=30)

    def names(row: int) -> list[str]:
        return set_names(truth, row)

    batch = folder / "tasks.json"
    alpool(cli, "next", ws, "-k", 10, "--hidden", 8, "--out", batch)
    tasks = json.loads(batch.read_text())
    config = alpool(cli, "labeling-config", ws).stdout
    assert 'choice="multiple"' in config
    project = studio.project("alpool multi-label", config)
    studio.import_tasks(project, tasks)
    by_row = {t["data"]["alpool_index"]: t for t in studio.tasks(project)}
    # Label Studio shows alpool's predicted sets.
    for t in tasks:
        shown = t["predictions"][0]["result"][0]["value"]["choices"]
        assert set(shown) <= set(CLASSES)
    r = [t["data"]["alpool_index"] for t in tasks]
    ann = studio.annotate
    for i in range(10):
        if i == 0:
            ann(by_row[r[0]]["id"], [choice(*names(r[0]))])
            other = set(names(r[0])) ^ {"bee"}  # a second annotator differs on bee
            ann(by_row[r[0]]["id"], [choice(*sorted(other))])
        elif i == 1:
            ann(by_row[r[1]]["id"], [])  # empty submit: no class applies
        elif i == 2:
            ann(by_row[r[2]]["id"], [], cancelled=True)  # skipped
        else:
            ann(by_row[r[i]]["id"], [choice(*names(r[i]))])
    before = stored_labels(ws)
    mask = {row: sum(1 << j for j, on in enumerate(truth[row]) if on) for row in r}
    for kind, _, copy, out in ingested_exports(cli, studio, project, ws, tmp_path, "ml-"):
        labels = stored_labels(copy)
        new = {row: c for row, c in labels.items() if row not in before}
        assert set(new) == {r[1], *r[3:]}, (kind, out, new)
        assert new[r[1]] == 0, (kind, "an empty submit is the empty set")
        assert all(new[row] == mask[row] for row in r[3:]), (kind, new, mask)
        assert open_conflicts(copy) == {r[0]}, (kind, out)
        status = alpool(cli, "status", copy).stdout
        assert "annotators disagree" in status, status


def stored_numbers(ws: Path) -> dict[int, float]:
    """A regression workspace's labels: each stored code is its number's
    f64 bits (see src/workspace/vocab.rs)."""
    return {
        row: struct.unpack("<d", struct.pack("<q", code))[0]
        for row, code in stored_labels(ws).items()
    }


def number(v: float) -> dict[str, Any]:
    return {"from_name": "label", "to_name": "item", "type": "number", "value": {"number": v}}


def test_regression_numbers_through_every_export_shape(
    cli: Path, studio: Studio, tmp_path: Path
) -> None:
    """A regression workspace: the labeling config's Number control, the
    model's number as each task's prediction, the typed numbers as labels
    in every export shape, and annotators who type different numbers kept
    apart as a conflict."""
    folder = tmp_path / "r"
    ws, truth = make_regression_workspace(cli, folder, seed=5, rows=200, labeled=30)
    assert stored_numbers(ws) == {r: float(truth[r]) for r in range(30)}
    batch = folder / "tasks.json"
    alpool(cli, "next", ws, "-k", 10, "--hidden", 8, "--out", batch)
    tasks = json.loads(batch.read_text())
    config = alpool(cli, "labeling-config", ws).stdout
    assert '<Number name="label" toName="item"' in config and "yield" in config
    project = studio.project("alpool regression", config)
    studio.import_tasks(project, tasks)
    by_row = {t["data"]["alpool_index"]: t for t in studio.tasks(project)}
    # Label Studio holds alpool's predicted numbers.
    for t in studio.tasks(project):
        shown = t["predictions"][0]["result"][0]["value"]["number"]
        assert isinstance(shown, float) and abs(shown - 10) < 50, t
    r = [t["data"]["alpool_index"] for t in tasks]
    assert not set(r) & set(range(30)), "a labeled item was selected"
    ann = studio.annotate
    ann(by_row[r[0]]["id"], [number(float(truth[r[0]]))])
    ann(by_row[r[0]]["id"], [number(float(truth[r[0]]) + 1)])  # a second annotator differs
    ann(by_row[r[1]]["id"], [], cancelled=True)  # skipped
    for row in r[2:]:
        ann(by_row[row]["id"], [number(float(truth[row]))])
    before = stored_numbers(ws)
    for kind, _, copy, out in ingested_exports(cli, studio, project, ws, tmp_path, "reg-"):
        labels = stored_numbers(copy)
        new = {row: v for row, v in labels.items() if row not in before}
        assert new == {row: float(truth[row]) for row in r[2:]}, (kind, out, new)
        assert open_conflicts(copy) == {r[0]}, (kind, out)
        status = alpool(cli, "status", copy).stdout
        assert "annotators disagree" in status and "regression" in status, status
        # The next round trains on the typed numbers.
        alpool(cli, "next", copy, "-k", 5, "--hidden", 8, "--out", copy / "b2.csv")
        picked = [int(line.split(",")[1]) for line in (copy / "b2.csv").read_text().split()[1:]]
        assert len(picked) == 5 and not set(picked) & set(labels) and r[1] not in picked
