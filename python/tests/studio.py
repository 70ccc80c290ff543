"""A real Label Studio server for the tests: started on 127.0.0.1 from the
`label-studio` installed by `.ci/run` (into `.venv-ls`), stopped by its
process id. A tiny JSON client over urllib, and the alpool CLI as a
function."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "alpool-test-token-1234"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def label_studio_binary() -> Path | None:
    env = os.environ.get("ALPOOL_LABEL_STUDIO")
    if env:
        return Path(env)
    local = ROOT / ".venv-ls" / "bin" / "label-studio"
    return local if local.exists() else None


class HttpError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


def call(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    raw: bool = False,
    timeout: float = 120,
) -> Any:
    if isinstance(body, bytes):
        data: bytes | None = body  # sent as is: a malformed body on purpose
    else:
        data = None if body is None else json.dumps(body).encode()
    h = {"Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, method=method, data=data, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            out = r.read()
    except urllib.error.HTTPError as e:
        raise HttpError(e.code, e.read().decode(errors="replace")) from None
    if raw:
        return out
    return json.loads(out) if out else None


class Studio:
    """A running Label Studio and its API, authenticated with a legacy
    token (`Authorization: Token …`)."""

    def __init__(self, url: str, proc: subprocess.Popen[bytes] | None, data: Path) -> None:
        self.url = url
        self.proc = proc
        self.data = data

    def close(self) -> None:
        """Stops the server and removes its data folder."""
        if self.proc is not None:
            stop(self.proc)
        shutil.rmtree(self.data, ignore_errors=True)

    def api(self, method: str, path: str, body: Any = None, raw: bool = False) -> Any:
        auth = {"Authorization": f"Token {TOKEN}"}
        return call(method, self.url + path, body, auth, raw=raw)

    def project(self, title: str, config: str) -> int:
        return int(
            self.api("POST", "/api/projects", {"title": title, "label_config": config})["id"]
        )

    def import_tasks(self, project: int, tasks: list[dict[str, Any]]) -> None:
        self.api("POST", f"/api/projects/{project}/import", tasks)

    def tasks(self, project: int) -> list[dict[str, Any]]:
        out = self.api("GET", f"/api/tasks?project={project}&page_size=1000&fields=all")
        return list(out["tasks"])

    def annotate(self, task: int, result: list[dict[str, Any]], cancelled: bool = False) -> None:
        self.api(
            "POST", f"/api/tasks/{task}/annotations", {"result": result, "was_cancelled": cancelled}
        )

    def export(self, project: int, kind: str) -> bytes:
        return bytes(self.api("GET", f"/api/projects/{project}/export?exportType={kind}", raw=True))


def start_label_studio(binary: Path, port: int | None = None, data: Path | None = None) -> Studio:
    """Starts Label Studio; given the port and data folder of one stopped
    before, starts it again as it was."""
    port = port or free_port()
    data = data or Path(tempfile.mkdtemp(prefix="alpool-ls-"))
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data),
        # Label Studio refuses ML backends on local addresses unless told.
        "ML_BLOCK_LOCAL_IP": "false",
        "SSRF_PROTECTION_ENABLED": "false",
    }
    args = [
        str(binary),
        "start",
        "--no-browser",
        "--internal-host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    args += ["--username", "test@alpool.dev", "--password", "alpool-pass-1"]
    args += ["--user-token", TOKEN, "--enable-legacy-api-token"]
    log = open(data / "label-studio.log", "ab")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"Label Studio exited: {(data / 'label-studio.log').read_text()[-3000:]}"
            )
        try:
            call("GET", url + "/health", timeout=2)
            studio = Studio(url, proc, data)
            studio.api("GET", "/api/projects")
            return studio
        except (OSError, HttpError):
            time.sleep(1)
    stop(proc)
    shutil.rmtree(data, ignore_errors=True)
    raise RuntimeError("Label Studio did not answer within 300 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stops a server we started, by its process id (its own session, so
    the workers it forked go with it)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def alpool(cli: Path, *args: Any, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([str(cli), *map(str, args)], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"alpool {' '.join(map(str, args))} failed:\n{r.stderr}")
    return r


def needed(path: Path | None, missing: str, hint: str) -> Path:
    """`path` if it exists; otherwise the test fails under CI (which
    installs everything) and skips, loudly, elsewhere."""
    import pytest

    if path is None or not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} ({hint})")
        pytest.skip(f"!!!!!! SKIPPING: {missing} ({hint}) !!!!!!")
    return path


def require_label_studio() -> Path:
    """The Label Studio binary that .ci/run installs into .venv-ls."""
    return needed(
        label_studio_binary(), "Label Studio is not installed", "ALPOOL_LABEL_STUDIO or .venv-ls"
    )
