"""Checkpoint downloads: streamed tar archives, found only by name among the job's checkpoints."""
from __future__ import annotations

import errno
import http.client
import io
import os
import shutil
import tarfile
import tracemalloc
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from app.config import get_settings
from app.db import session_scope
from app.jobs.archive import stream_snapshot, stream_tar
from app.jobs.models import Checkpoint
from tests.app.conftest import TOKEN
from tests.app.factories import make_finished_job
from tests.fixtures import LiveServer

SECRET = "TOP-SECRET-OUTSIDE"
OTHER = "OTHER-JOB-WEIGHTS"


@pytest.fixture
def jobs(auth_on) -> dict:
    """Job A with two checkpoints, a job B, and secrets around them on disk."""
    data_dir = get_settings().data_dir
    a, b = make_finished_job(data_dir), make_finished_job(data_dir)
    (data_dir / "secret.txt").write_text(SECRET)
    (data_dir / "jobs" / str(b) / "final" / "marker.txt").write_text(OTHER)
    stray = data_dir / "jobs" / str(a) / "not-a-checkpoint"
    stray.mkdir()
    (stray / "x.txt").write_text(SECRET)
    outside = data_dir / "outside"
    outside.mkdir()
    (outside / "weights.bin").write_text(SECRET)
    (data_dir / "jobs" / str(a) / "linked").symlink_to(outside, target_is_directory=True)
    with session_scope() as session:
        session.add_all([
            Checkpoint(job_id=a, name="escape", step=9, path="jobs/../outside"),
            Checkpoint(job_id=a, name="absolute", step=9, path=str(outside.resolve())),
            Checkpoint(job_id=a, name="other-job", step=9, path=f"jobs/{b}/final"),
            Checkpoint(job_id=a, name="linked", step=9, path=f"jobs/{a}/linked"),
            Checkpoint(job_id=a, name="gone", step=9, path=f"jobs/{a}/gone"),
        ])
    return {"a": a, "b": b, "data_dir": data_dir, "outside": outside}


def traversal_names(jobs: dict) -> list[str]:
    """Raw path segments (sent unnormalised) that must never reach a file."""
    secret = str(jobs["data_dir"] / "secret.txt")
    other = str(jobs["data_dir"] / "jobs" / str(jobs["b"]) / "final")
    return [
        "..", "../..", "../secret.txt", "../../secret.txt", ".", "./final", "final/..",
        "%2e%2e", "%2E%2E", "%2e%2e%2f", "%2e%2e%2fsecret.txt", "%2e%2e%2f%2e%2e%2fsecret.txt",
        "..%2f..%2fsecret.txt", "..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "%252e%252e", "%252e%252e%252fsecret.txt", "%25252e%25252e%25252f",
        "..%5c..%5csecret.txt", "..\\..\\secret.txt", "%5c..%5csecret.txt", "final\\..",
        "/etc/passwd", "%2fetc%2fpasswd", "%2Fetc%2Fpasswd", quote(secret, safe=""),
        quote(other, safe=""), quote(other, safe="/"), f"..%2f{jobs['b']}%2ffinal",
        f"..%2f..%2f{jobs['b']}%2ffinal", "not-a-checkpoint", "..%2fnot-a-checkpoint",
        "final%00", "%00", "..%00", "..;", "..%c0%af..%c0%afsecret.txt", "%c0%ae%c0%ae",
        "..%u2215secret.txt", "FINAL", "final%2f", "final%20", "%20final", "~", "*",
        "escape", "absolute", "other-job", "linked", "gone",
    ]


def assert_nothing_leaked(status: int, body: bytes, name: str) -> None:
    assert status == 404, (name, status, body[:200])
    assert SECRET.encode() not in body and OTHER.encode() not in body, name
    assert b"ustar" not in body, name  # no tar archive at all


def test_traversal_table_over_a_real_server(jobs, settings_env, tmp_path):
    server = LiveServer({**settings_env, "TUNEDECK_API_TOKENS": TOKEN}, tmp_path / "serve.log",
                        with_worker=False)
    try:
        for name in traversal_names(jobs):
            for job in (str(jobs["a"]), f"{jobs['a']}%2f..%2f{jobs['b']}"):
                status, body = raw_get(server.port, f"/api/v1/jobs/{job}/checkpoints/{name}"
                                                    "/download")
                if job != str(jobs["a"]):
                    assert status in (404, 422), (job, name, status)
                    continue
                assert_nothing_leaked(status, body, name)
        status, body = raw_get(server.port, f"/api/v1/jobs/{jobs['a']}/checkpoints/final/download")
        assert status == 200 and b"ustar" in body
    finally:
        server.stop()


def raw_get(port: int, target: str) -> tuple[int, bytes]:
    """Send the request target byte for byte (httpx would normalise dot segments)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("GET", target, skip_accept_encoding=True)
        conn.putheader("Authorization", f"Bearer {TOKEN}")
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_traversal_table_in_process(jobs, auth_client):
    # httpx resolves literal dot segments before sending; the real-server test sends them raw.
    for name in [n for n in traversal_names(jobs) if "/" not in n and n not in (".", "..")]:
        response = auth_client.get(f"/api/v1/jobs/{jobs['a']}/checkpoints/{name}/download")
        assert_nothing_leaked(response.status_code, response.content, name)


def test_the_archive_holds_exactly_the_checkpoint(jobs, auth_client):
    response = auth_client.get(f"/api/v1/jobs/{jobs['a']}/checkpoints/checkpoint-2/download")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-tar"
    assert (response.headers["content-disposition"]
            == f'attachment; filename="job-{jobs["a"]}-checkpoint-2.tar"')
    assert "content-length" not in response.headers  # streamed, not built first
    with tarfile.open(fileobj=io.BytesIO(response.content)) as tar:
        names = sorted(tar.getnames())
        root = f"job-{jobs['a']}-checkpoint-2"
        assert names == [root, f"{root}/config.json", f"{root}/model.safetensors"]
        weights = tar.extractfile(f"{root}/model.safetensors").read()
    source = jobs["data_dir"] / "jobs" / str(jobs["a"]) / "checkpoint-2" / "model.safetensors"
    assert weights == source.read_bytes()


def test_a_symlink_inside_a_checkpoint_is_archived_as_a_link_not_followed(jobs, auth_client):
    final = jobs["data_dir"] / "jobs" / str(jobs["a"]) / "final"
    (final / "leak").symlink_to(jobs["data_dir"] / "secret.txt")
    response = auth_client.get(f"/api/v1/jobs/{jobs['a']}/checkpoints/final/download")
    assert response.status_code == 200 and SECRET.encode() not in response.content
    with tarfile.open(fileobj=io.BytesIO(response.content)) as tar:
        assert tar.getmember(f"job-{jobs['a']}-final/leak").issym()


def test_unknown_job_is_404(auth_client):
    assert auth_client.get("/api/v1/jobs/4242/checkpoints/final/download").status_code == 404


def test_stream_tar_keeps_memory_flat(tmp_path: Path):
    big = tmp_path / "ckpt"
    big.mkdir()
    with (big / "weights.bin").open("wb") as f:
        for _ in range(64):
            f.write(os.urandom(1024 * 1024))
    tracemalloc.start()
    try:
        total = sum(len(chunk) for chunk in stream_tar(big, "ckpt"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total > 64 * 1024 * 1024
    assert peak < 16 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB for a 64 MB archive"


def test_a_reader_that_goes_away_stops_the_tar_thread(tmp_path: Path):
    big = tmp_path / "ckpt"
    big.mkdir()
    (big / "weights.bin").write_bytes(b"\0" * (32 * 1024 * 1024))
    stream = stream_tar(big, "ckpt", max_chunks=2)
    next(stream)
    stream.close()  # what Starlette does when the client disconnects


# ---------------------------------------------------------------- deleted while downloading

def fill_checkpoint(directory: Path) -> dict[str, bytes]:
    """A big first file (read while the deletion happens) and small ones after it."""
    files = {"a-weights.bin": os.urandom(24 * 1024 * 1024),
             "z-config.json": b'{"a": 1}', "z-trainer_state.json": b'{"global_step": 2}'}
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return files


def tar_members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {Path(m.name).name: tar.extractfile(m).read() for m in tar if m.isfile()}


def test_a_checkpoint_deleted_while_it_downloads_still_arrives_whole(
        finished_job, settings_env, tmp_path):
    checkpoint = get_settings().data_dir / "jobs" / str(finished_job) / "checkpoint-2"
    files = {**fill_checkpoint(checkpoint), "config.json": (checkpoint / "config.json")
             .read_bytes(), "model.safetensors": (checkpoint / "model.safetensors").read_bytes()}
    server = LiveServer(settings_env, tmp_path / "serve.log", with_worker=False)
    url = f"{server.url}/api/v1/jobs/{finished_job}/checkpoints/checkpoint-2/download"
    try:
        with httpx.stream("GET", url, timeout=60) as response:
            assert response.status_code == 200
            chunks = response.iter_raw(64 * 1024)
            received = [next(chunks)]
            shutil.rmtree(checkpoint)  # what save_total_limit does to an old checkpoint
            received.extend(chunks)
    finally:
        server.stop()
    assert not checkpoint.exists()
    assert tar_members(b"".join(received)) == files
    assert list((get_settings().data_dir / "tmp").iterdir()) == []  # the snapshot went


def test_a_normal_download_through_the_snapshot(finished_job, client):
    checkpoint = get_settings().data_dir / "jobs" / str(finished_job) / "checkpoint-2"
    files = {p.name: p.read_bytes() for p in checkpoint.iterdir()}
    response = client.get(f"/api/v1/jobs/{finished_job}/checkpoints/checkpoint-2/download")
    assert response.status_code == 200 and tar_members(response.content) == files
    assert (checkpoint / "config.json").stat().st_nlink == 1  # the snapshot's links are gone
    assert list((get_settings().data_dir / "tmp").iterdir()) == []


def test_the_snapshot_copies_where_hard_links_are_refused(tmp_path, monkeypatch):
    source = tmp_path / "checkpoint-2"
    source.mkdir()
    files = fill_checkpoint(source)

    def refuse(*args, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", refuse)
    blocks = stream_snapshot(source, "ckpt", tmp_path / "scratch")
    shutil.rmtree(source)
    assert tar_members(b"".join(blocks)) == files
    assert list((tmp_path / "scratch").iterdir()) == []
