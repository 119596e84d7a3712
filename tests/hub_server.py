"""A stand-in for the Hugging Face Hub's HTTP API, enough for huggingface_hub's create_repo and
upload_folder (tests/worker/test_push.py points HF_ENDPOINT at it).

It implements what huggingface_hub 2.x sends for those two calls: POST /api/repos/create,
POST /api/validate-yaml (a README.md's metadata), POST /api/models/{repo}/preupload/{revision}, POST /api/models/{repo}/commit/{revision} (an
NDJSON body with files inline, base64) and, for files it answers "lfs" for, the git-LFS batch
API plus a PUT of the bytes (the client's "basic" transfer; with hf_xet installed the client
sends LFS files through Xet storage instead, which this server does not speak, so it answers
"lfs" only when told to). Every request is recorded, headers included; a request without the
expected bearer token gets the Hub's 401, whose message echoes the token it got, as a careless
server might: the caller must not pass that on.
"""
from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

USER = "tunedeck-user"  # the namespace of a repo id given without one


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass
class HubState:
    token: str
    lfs_from_bytes: int | None = None  # files at least this big go through LFS; None: none
    requests: list[Recorded] = field(default_factory=list)
    repos: dict[str, dict[str, Any]] = field(default_factory=dict)  # repo id -> create payload
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)  # repo id -> path -> bytes
    lfs_objects: dict[str, bytes] = field(default_factory=dict)  # sha256 -> bytes
    commits: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeHub:
    """Serves on 127.0.0.1 on a free port from a daemon thread; `url` is the HF_ENDPOINT."""

    def __init__(self, token: str, lfs_from_bytes: int | None = None):
        self.state = HubState(token=token, lfs_from_bytes=lfs_from_bytes)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        handler.url = self.url
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    state: HubState
    url: str

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with self.state.lock:
            self.state.requests.append(Recorded(self.command, self.path,
                                                    {k.lower(): v for k, v in self.headers.items()}, body))
        received = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        if self.path.startswith("/lfs-upload/"):  # signed storage URLs carry no token
            return self._lfs_put(self.path.rsplit("/", 1)[1], body)
        if received != self.state.token:
            return self._json(401, {"error": f"Invalid credentials in Authorization header "
                                             f"(got {received!r})"})
        path = self.path.split("?", 1)[0]
        if self.command == "POST" and path == "/api/repos/create":
            return self._create(json.loads(body))
        if self.command == "POST" and path == "/api/validate-yaml":
            return self._validate_yaml(json.loads(body)["content"])
        if self.command == "POST" and path.endswith(".git/info/lfs/objects/batch"):
            return self._lfs_batch(json.loads(body))
        parts = path.split("/")  # "", "api", "models", ns, name, action, revision
        if self.command == "POST" and len(parts) == 7 and parts[1:3] == ["api", "models"]:
            repo_id = f"{parts[3]}/{parts[4]}"
            if repo_id not in self.state.repos:
                return self._json(404, {"error": "Repository not found"},
                                  {"X-Error-Code": "RepoNotFound"})
            if parts[5] == "preupload":
                return self._preupload(json.loads(body))
            if parts[5] == "commit":
                return self._commit(repo_id, body)
        self._json(404, {"error": f"not served by the test hub: {self.command} {path}"})

    def _create(self, payload: dict[str, Any]) -> None:
        repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
        with self.state.lock:
            self.state.repos[repo_id] = payload
            self.state.files.setdefault(repo_id, {})
        self._json(200, {"url": f"{self.url}/{repo_id}", "name": repo_id})

    def _validate_yaml(self, content: str) -> None:
        """The README's metadata block must be a YAML mapping (the Hub checks more)."""
        _, _, rest = content.partition("---\n")
        block, found, _ = rest.partition("\n---")
        try:
            metadata = yaml.safe_load(block) if found else None
        except yaml.YAMLError as exc:
            return self._json(400, {"errors": [{"message": str(exc)}]})
        if not isinstance(metadata, dict):
            return self._json(400, {"errors": [{"message": "no YAML metadata block"}]})
        self._json(200, {"warnings": []})

    def _preupload(self, payload: dict[str, Any]) -> None:
        limit = self.state.lfs_from_bytes
        modes = [{"path": f["path"], "shouldIgnore": False, "oid": None,
                  "uploadMode": "lfs" if limit is not None and f["size"] >= limit
                  else "regular"} for f in payload["files"]]
        self._json(200, {"files": modes})

    def _lfs_batch(self, payload: dict[str, Any]) -> None:
        objects = [{"oid": o["oid"], "size": o["size"], "authenticated": True,
                    "actions": {"upload": {"href": f"{self.url}/lfs-upload/{o['oid']}"}}}
                   for o in payload["objects"]]
        self._json(200, {"transfer": "basic", "objects": objects})

    def _lfs_put(self, oid: str, body: bytes) -> None:
        if hashlib.sha256(body).hexdigest() != oid:
            return self._json(400, {"error": "sha256 mismatch"})
        with self.state.lock:
            self.state.lfs_objects[oid] = body
        self._json(200, {})

    def _commit(self, repo_id: str, body: bytes) -> None:
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        added: dict[str, bytes] = {}
        for line in lines:
            value = line["value"]
            if line["key"] == "file":
                added[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "lfsFile":
                if value["oid"] not in self.state.lfs_objects:
                    return self._json(400, {"error": f"LFS object of {value['path']} missing"})
                added[value["path"]] = self.state.lfs_objects[value["oid"]]
        oid = hashlib.sha1(body).hexdigest()
        with self.state.lock:
            self.state.files[repo_id].update(added)
            self.state.commits.append({"repo_id": repo_id, "header": lines[0]["value"],
                                       "paths": sorted(added), "oid": oid})
        self._json(200, {"commitUrl": f"{self.url}/{repo_id}/commit/{oid}", "commitOid": oid,
                         "pullRequestUrl": None})

    def _json(self, status: int, payload: dict[str, Any],
              headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
