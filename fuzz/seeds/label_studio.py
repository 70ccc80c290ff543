"""Writes the `labels` and `server` fuzz targets' seeds from a real Label
Studio: tasks shaped as alpool exports them (ids i0…i15, the fuzz token,
classes cat, dog and bird), annotated in the awkward ways people annotate,
then exported in every shape Label Studio offers, and one webhook body per
annotation as Label Studio sends them.

    ALPOOL_LABEL_STUDIO=.venv-ls/bin/label-studio \\
        .venv/bin/python fuzz/seeds/label_studio.py fuzz/seeds

Run by hand when Label Studio's formats change; the files it writes are
committed, since CI has no time to start Label Studio for the fuzz pass."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python" / "tests"))
from studio import label_studio_binary, start_label_studio  # noqa: E402

TOKEN = "fuzztoken"  # alpool::fuzz::TOKEN
CONFIG = """<View>
  <Text name="item" value="$text"/>
  <Choices name="label" toName="item" choice="multiple">
    <Choice value="cat"/><Choice value="dog"/><Choice value="bird"/>
  </Choices>
  <TextArea name="comment" toName="item"/>
</View>"""


def choice(*names: str) -> dict[str, Any]:
    return {
        "from_name": "label",
        "to_name": "item",
        "type": "choices",
        "value": {"choices": list(names)},
    }


def main(out: Path) -> None:
    binary = label_studio_binary()
    if binary is None:
        sys.exit("no Label Studio: set ALPOOL_LABEL_STUDIO")
    studio = start_label_studio(binary)
    try:
        project = studio.project("fuzz seeds", CONFIG)
        tasks = [
            {
                "data": {
                    "text": f"item {i}",
                    "alpool_id": f"i{i}",
                    "alpool_index": i,
                    "alpool_round": 0,
                    "alpool_workspace": TOKEN,
                },
                "predictions": [
                    {
                        "model_version": f"alpool-{TOKEN}",
                        "score": 0.25 + i / 100,
                        "result": [choice(["cat", "dog", "bird"][i % 3])],
                    }
                ],
            }
            for i in range(8)
        ]
        studio.import_tasks(project, tasks)
        ids = [t["id"] for t in sorted(studio.tasks(project), key=lambda t: t["data"]["alpool_index"])]
        studio.annotate(ids[0], [choice("cat")])
        studio.annotate(ids[1], [choice("dog")])
        studio.annotate(ids[1], [choice("bird")])  # a second annotator disagrees
        studio.annotate(ids[2], [choice("cat", "dog")])  # two ticked
        studio.annotate(ids[3], [], cancelled=True)  # skipped
        studio.annotate(ids[4], [])  # submitted empty
        comment = {
            "from_name": "comment",
            "to_name": "item",
            "type": "textarea",
            "value": {"text": ["blurry"]},
        }
        studio.annotate(ids[5], [choice("bird"), comment])
        labels = out / "labels"
        labels.mkdir(parents=True, exist_ok=True)
        # The labels target's first byte picks the extension: 0 json, 1 csv,
        # 2 tsv.
        for kind, pick in [("JSON", 0), ("JSON_MIN", 0), ("CSV", 1), ("TSV", 2)]:
            body = studio.export(project, kind)
            (labels / f"label-studio-{kind.lower()}").write_bytes(bytes([pick]) + body)
        (labels / "plain-csv").write_bytes(b"\x01id,label\ni0,cat\ni1,dog\n")
        (labels / "seed-csv").write_bytes(b"\x05id,label\ni0,cat\ni1,dog\n")
        server = out / "server"
        server.mkdir(parents=True, exist_ok=True)
        auth = "Authorization: Token s3cret\n"
        for t in studio.tasks(project):
            for a in t.get("annotations", []):
                hook = {"action": "ANNOTATION_CREATED", "task": t, "annotation": a}
                body = json.dumps(hook).encode()
                head = f"POST /webhook HTTP/1.1\n{auth}Content-Length: {len(body)}\n\n"
                (server / f"webhook-{a['id']}").write_bytes(head.encode() + body)
        predict = json.dumps({"tasks": studio.tasks(project)[:3]}).encode()
        (server / "predict").write_bytes(f"POST /predict\n{auth}\n".encode() + predict)
        setup = json.dumps({"schema": CONFIG.replace("$text", "$text"), "project": "1"})
        (server / "setup").write_bytes(f"POST /setup\n{auth}\n{setup}".encode())
        (server / "health").write_bytes(b"GET /health\n\n")
        (server / "basic").write_bytes(b"POST /train\nAuthorization: Basic dXNlcjpzM2NyZXQ=\n\n")
    finally:
        studio.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
