"""A small Python client for the tunedeck REST API; it needs only httpx and the standard library.

    from app.client import Client

    client = Client("http://gpu-box:8000", token="td_...")  # or TUNEDECK_URL / TUNEDECK_TOKEN
    job = client.submit(spec)                               # the job spec as a dict
    for event in client.events(job["id"]):                  # status / progress / metric / end
        print(event.event, event.data)
    client.download(job["id"], dest="models")              # -> models/job-1-final/
    client.predict(job["id"], [{"text": "a fine film"}])     # Try it: {"predictions": [...]}
"""
from __future__ import annotations

import json
import os
import ssl
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
FINISHED = ("succeeded", "failed", "cancelled")
STREAM_TIMEOUT = httpx.Timeout(10.0, read=60.0)  # the server sends a keepalive every 15 s
RECONNECTS = 5
# The server waits TUNEDECK_INFERENCE_TIMEOUT_SECONDS (30 s by default) for the inference
# worker, which may first load the checkpoint: wait longer than that for its answer.
PREDICT_TIMEOUT = httpx.Timeout(10.0, read=120.0)
TEXT_TASKS = ("text-classification", "multi-label-classification", "text-regression")
# A little over the server's own waits (TUNEDECK_PREFLIGHT_TIMEOUT_SECONDS, ..._MEASURE_...).
PREFLIGHT_TIMEOUT = httpx.Timeout(10.0, read=130.0)
MEASURE_TIMEOUT = httpx.Timeout(10.0, read=610.0)


class ApiError(Exception):
    """An HTTP error from the server, with its status code and `detail`."""

    def __init__(self, status_code: int, detail: Any):
        self.status_code = status_code
        self.detail = detail
        super().__init__(f"HTTP {status_code}: {_describe(detail)}")


def _describe(detail: Any) -> str:
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(map(str, d.get('loc', [])[1:]))}: {d.get('msg')}"
                         if isinstance(d, dict) else str(d) for d in detail)
    return str(detail)


@dataclass(frozen=True)
class Event:
    """One server-sent event: `event` is status, progress, metric or end."""

    event: str
    data: Any
    id: int | None = None


def settings_from_env() -> tuple[str, str | None]:
    """TUNEDECK_URL (default http://127.0.0.1:8000) and TUNEDECK_TOKEN."""
    return os.environ.get("TUNEDECK_URL") or DEFAULT_URL, os.environ.get("TUNEDECK_TOKEN")


def _tls_for(url: str) -> ssl.SSLContext | bool:
    """httpx's default (the CA bundle) for an https server. A plain-http one needs no TLS, and
    loading the bundle is most of a CLI command's start (76 ms of 0.3 s): it gets a context
    that still verifies but trusts no CA, so a TLS connection (a proxy) fails closed."""
    if url.startswith("https://"):
        return True
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


class Client:
    """Jobs, events, checkpoints and datasets of one tunedeck server."""

    def __init__(self, url: str | None = None, token: str | None = None, *,
                 timeout: float = 30.0, transport: httpx.BaseTransport | None = None):
        env_url, env_token = settings_from_env()
        self.url = (url or env_url).rstrip("/")
        token = token if token is not None else env_token
        headers = {"User-Agent": "tunedeck-client"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=f"{self.url}/api/v1", headers=headers,
                                  timeout=timeout, transport=transport,
                                  verify=_tls_for(self.url))

    def __repr__(self) -> str:
        return f"Client({self.url!r})"  # never the token

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        _raise_for(response)
        return response.json() if response.content else None

    # ------------------------------------------------------------ jobs

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Validate and queue a job; returns the job (422 names the bad field)."""
        return self._request("POST", "/jobs", json=spec)

    def preflight(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The data report of a spec, before anything is queued (422 names the bad field)."""
        return self._request("POST", "/preflight", json=spec, timeout=PREFLIGHT_TIMEOUT)

    def measure(self, spec: dict[str, Any], steps: int = 20) -> dict[str, Any]:
        """Samples/s, peak memory and ETA from `steps` real optimizer steps of the spec."""
        return self._request("POST", "/preflight/measure", json=spec,
                             params={"steps": steps}, timeout=MEASURE_TIMEOUT)

    def jobs(self, status: str | None = None, page: int = 1, per_page: int = 20,
             tag: str | None = None) -> dict:
        params = {"page": page, "per_page": per_page, **({"status": status} if status else {}),
                  **({"tag": tag} if tag else {})}
        return self._request("GET", "/jobs", params=params)

    def annotate(self, job_id: int, *, tags: list[str] | None = None,
                 note: str | None = None) -> dict[str, Any]:
        """Replace the job's tags and/or note (any state); note="" clears it."""
        body: dict[str, Any] = {"tags": tags} if tags is not None else {}
        if note is not None:
            body["note"] = note or None
        return self._request("PATCH", f"/jobs/{int(job_id)}", json=body)

    def compare(self, job_ids: list[int], max_points: int = 500) -> dict[str, Any]:
        """spec_diff, final_metrics, best, series per job and the flips' summary."""
        return self._request("GET", "/compare", params={
            "jobs": ",".join(str(int(i)) for i in job_ids), "max_points": max_points})

    def flips(self, job_ids: list[int], *, direction: str = "all", label: str | None = None,
              page: int = 1, per_page: int = 20) -> dict[str, Any]:
        """Rows right in one job and wrong in another; fixed/broken against the first job."""
        params = {"jobs": ",".join(str(int(i)) for i in job_ids), "direction": direction,
                  "page": page, "per_page": per_page, **({"label": label} if label else {})}
        return self._request("GET", "/compare/flips", params=params)

    def job(self, job_id: int) -> dict[str, Any]:
        return self._request("GET", f"/jobs/{int(job_id)}")

    def cancel(self, job_id: int) -> dict[str, Any]:
        """Queued: cancelled at once; running: stops at the next step (409 when finished)."""
        return self._request("POST", f"/jobs/{int(job_id)}/cancel")

    def attempts(self, job_id: int) -> list[dict[str, Any]]:
        """Each time a worker took the job: host, times, outcome, checkpoint resumed from."""
        return self._request("GET", f"/jobs/{int(job_id)}/attempts")

    def metrics(self, job_id: int, **params: Any) -> dict[str, Any]:
        """Series by name; params: after_step, max_points, name."""
        return self._request("GET", f"/jobs/{int(job_id)}/metrics", params=params)

    def checkpoints(self, job_id: int) -> list[dict[str, Any]]:
        return self._request("GET", f"/jobs/{int(job_id)}/checkpoints")

    def predictions(self, job_id: int, *, errors_only: bool = False, page: int = 1,
                    per_page: int = 50) -> dict[str, Any]:
        params = {"errors_only": errors_only, "page": page, "per_page": per_page}
        return self._request("GET", f"/jobs/{int(job_id)}/predictions", params=params)

    def wait(self, job_id: int, poll_seconds: float = 2.0, timeout: float | None = None) -> dict:
        """Poll until the job finishes; returns the final job."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (job := self.job(job_id))["status"] not in FINISHED:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout}s")
            time.sleep(poll_seconds)
        return job

    # ------------------------------------------------------------ sweeps

    def submit_sweep(self, sweep: dict[str, Any]) -> dict[str, Any]:
        """{name, base: <job spec>, grid: {dotted key: [values]}, metric, mode, random, ranges}
        -> {id, jobs}; a 422 names a bad point and field, and then nothing is queued."""
        return self._request("POST", "/sweeps", json=sweep)

    def sweep(self, sweep_id: int) -> dict[str, Any]:
        """The sweep's jobs with their values, status, progress and metric, best first."""
        return self._request("GET", f"/sweeps/{int(sweep_id)}")

    def cancel_sweep(self, sweep_id: int) -> dict[str, Any]:
        return self._request("POST", f"/sweeps/{int(sweep_id)}/cancel")

    # ------------------------------------------------------------ events

    def events(self, job_id: int, after: int | None = None) -> Iterator[Event]:
        """The job's event stream until its `end` event; reconnects from the last id seen."""
        cursor, failures, started = after, 0, False
        while True:
            try:
                for event in self._stream(job_id, cursor):
                    failures, started = 0, True
                    cursor = event.id if event.id is not None else cursor
                    yield event
                    if event.event == "end":
                        return
            except (httpx.TransportError, httpx.StreamError):
                if not started:
                    raise  # never connected: a wrong URL should fail fast
                # cut off mid-stream: resume from the cursor below
            failures += 1
            if failures > RECONNECTS:
                raise ApiError(503, f"the event stream of job {job_id} keeps breaking off")
            time.sleep(min(2.0 * failures, 10.0))

    def _stream(self, job_id: int, cursor: int | None) -> Iterator[Event]:
        headers = {"Accept": "text/event-stream"}
        if cursor is not None:
            headers["Last-Event-ID"] = str(cursor)
        with self._http.stream("GET", f"/jobs/{int(job_id)}/events", headers=headers,
                               timeout=STREAM_TIMEOUT) as response:
            if response.is_error:
                response.read()
                _raise_for(response)
            yield from parse_sse(response.iter_lines())

    # ------------------------------------------------------------ checkpoints

    def download(self, job_id: int, checkpoint: str | None = None, dest: str | Path = ".",
                 *, extract: bool = True,
                 on_progress: Callable[[int], None] | None = None) -> Path:
        """Stream a checkpoint (default: final, else the latest) into dest.

        Returns the extracted directory dest/job-ID-NAME, or the .tar when extract=False.
        """
        name = checkpoint or self.default_checkpoint(job_id)
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        archive = dest / f"job-{int(job_id)}-{_plain(name)}.tar"
        self._save(f"/jobs/{int(job_id)}/checkpoints/{quote(name, safe='')}/download",
                   archive, on_progress)
        if not extract:
            return archive
        with tarfile.open(archive, "r:") as tar:
            tar.extractall(dest, filter="data")
        archive.unlink()
        return dest / archive.stem

    def push(self, job_id: int, checkpoint: str, repo_id: str, *,
             private: bool = True) -> dict[str, Any]:
        """Push a checkpoint to the Hugging Face Hub with the server's TUNEDECK_HF_TOKEN; returns
        the push (queued). Poll push_status until its status is succeeded or failed."""
        return self._request("POST", f"/jobs/{int(job_id)}/checkpoints/{quote(checkpoint, safe='')}"
                             "/push", json={"repo_id": repo_id, "private": private})

    def pushes(self, job_id: int) -> list[dict[str, Any]]:
        """The job's pushes to the Hub, newest first."""
        return self._request("GET", f"/jobs/{int(job_id)}/pushes")

    def push_status(self, job_id: int, push_id: int) -> dict[str, Any]:
        return self._request("GET", f"/jobs/{int(job_id)}/pushes/{int(push_id)}")

    def default_checkpoint(self, job_id: int) -> str:
        checkpoints = self.checkpoints(job_id)
        if not checkpoints:
            raise ApiError(404, f"job {job_id} has no checkpoints yet")
        names = [c["name"] for c in checkpoints]
        if "final" in names:
            return "final"
        return max(checkpoints, key=lambda c: c["step"])["name"]

    def predict(self, job_id: int, inputs: list[dict[str, Any]], checkpoint: str | None = None,
                *, max_new_tokens: int | None = None) -> dict[str, Any]:
        """Try a checkpoint (default: final, else the latest) on inputs in the task's shape,
        keyed by the job's dataset fields, e.g. [{"text": "..."}]; returns {"predictions":
        [rows as in predictions()], "checkpoint", "device", "seconds"}."""
        name = checkpoint or self.default_checkpoint(job_id)
        body: dict[str, Any] = {"inputs": inputs}
        if max_new_tokens is not None:
            body["max_new_tokens"] = max_new_tokens
        return self._request("POST", f"/jobs/{int(job_id)}/checkpoints/{quote(name, safe='')}"
                             "/predict", json=body, timeout=PREDICT_TIMEOUT)

    def _save(self, path: str, target: Path, on_progress: Callable[[int], None] | None) -> None:
        partial = target.with_name(target.name + ".part")
        done = 0
        try:
            with self._http.stream("GET", path, timeout=STREAM_TIMEOUT) as response:
                if response.is_error:
                    response.read()
                    _raise_for(response)
                with partial.open("wb") as out:
                    for chunk in response.iter_bytes(1024 * 1024):
                        out.write(chunk)
                        done += len(chunk)
                        if on_progress:
                            on_progress(done)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)

    # ------------------------------------------------------------ datasets

    def upload_dataset(self, path: str | Path, label_column: str | None = None) -> dict:
        """Upload a .csv/.tsv/.jsonl/.parquet file; returns id, columns, rows, preview."""
        path = Path(path)
        data = {"label_column": label_column} if label_column else None
        with path.open("rb") as f:
            return self._request("POST", "/datasets", files={"file": (path.name, f)},
                                 data=data, timeout=httpx.Timeout(30.0, write=None, read=300.0))

    def datasets(self, page: int = 1, per_page: int = 50) -> dict[str, Any]:
        return self._request("GET", "/datasets", params={"page": page, "per_page": per_page})

    def dataset(self, dataset_id: str, label_column: str | None = None) -> dict[str, Any]:
        params = {"label_column": label_column} if label_column else None
        return self._request("GET", f"/datasets/{quote(dataset_id, safe='')}", params=params)

    def delete_dataset(self, dataset_id: str) -> None:
        self._request("DELETE", f"/datasets/{quote(dataset_id, safe='')}")


def input_from_texts(spec: dict[str, Any], texts: list[str]) -> dict[str, Any]:
    """One Try it input from command-line texts: a text (or a text pair) for the text tasks,
    a sentence for token classification, a prompt (a user turn for chat jobs) for SFT."""
    ds, task = spec["dataset"], spec.get("task") or "text-classification"
    if task in TEXT_TASKS:
        fields = list(ds["text_fields"])
    elif task == "token-classification":
        fields = [ds.get("tokens_field") or "tokens"]
    else:
        fields = [ds.get("messages_field") or ds.get("prompt_field") or "prompt"]
    if len(texts) != len(fields):
        wanted = " and ".join(fields)
        raise ValueError(f"this {task} job takes {len(fields)} text(s): {wanted}")
    return dict(zip(fields, texts, strict=True))


def _plain(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".") or "x"


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text or response.reason_phrase
    raise ApiError(response.status_code, detail)


def parse_sse(lines: Iterator[str]) -> Iterator[Event]:
    """Server-sent events from text lines (comments and retry: lines are skipped)."""
    kind, event_id = "message", None
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield Event(kind, json.loads("\n".join(data)), event_id)
            kind, data = "message", []
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            kind = value
        elif field == "data":
            data.append(value)
        elif field == "id" and value.isdigit():
            event_id = int(value)
