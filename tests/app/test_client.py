"""app.client and the watch progress line, against a scripted transport (no server)."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import httpx
import pytest

from app import cli_remote
from app.cli_text import describe_prediction
from app.client import ApiError, Client, Event, input_from_texts, parse_sse
from app.terminal_bar import ProgressLine, clock, eval_metric, render


def sse(*events: tuple[str, dict, int | None]) -> bytes:
    out = ["retry: 2000", "", ": keepalive", ""]
    for kind, data, event_id in events:
        if event_id is not None:
            out.append(f"id: {event_id}")
        out += [f"event: {kind}", f"data: {json.dumps(data)}", ""]
    return ("\n".join(out) + "\n").encode()


def snapshot(status: str, step: int = 0, **metrics: float) -> dict:
    return {"status": status, "latest_metrics": dict(metrics),
            "progress": {"step": step, "max_steps": 10, "fraction": step / 10,
                         "eta_seconds": 65.0, "epoch": None}}


def job(status: str, **extra) -> dict:
    return {"id": 3, "status": status, "name": "j", "started_at": "2026-01-01T00:00:00",
            "finished_at": "2026-01-01T00:01:05", "latest_metrics": {}, "final_metrics": None,
            "error": None, "progress": snapshot(status, 10)["progress"], **extra}


def test_parse_sse_reads_ids_events_and_multiline_data():
    lines = ["retry: 2000", "", ": comment", "id: 7", "event: metric", 'data: {"a":', "data: 1}",
             "", "event: end", 'data: {"status": "failed"}', ""]
    assert list(parse_sse(iter(lines))) == [Event("metric", {"a": 1}, 7),
                                            Event("end", {"status": "failed"}, 7)]


def test_the_token_is_sent_but_never_shown():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(200, json={"items": [], "total": 0})

    client = Client("http://x", "td_secret", transport=httpx.MockTransport(handler))
    client.jobs()
    assert seen == ["Bearer td_secret"] and "td_secret" not in repr(client)


def test_errors_name_the_field():
    detail = [{"loc": ["body", "training", "learning_rate"], "msg": "must be > 0"}]
    transport = httpx.MockTransport(lambda r: httpx.Response(422, json={"detail": detail}))
    with pytest.raises(ApiError) as caught:
        Client("http://x", transport=transport).submit({})
    assert caught.value.status_code == 422
    assert str(caught.value) == "HTTP 422: training.learning_rate: must be > 0"


def test_events_resume_from_the_last_id_after_a_cut(monkeypatch):
    monkeypatch.setattr("app.client.time.sleep", lambda _s: None)
    requests = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request.headers.get("last-event-id"))
        if len(requests) == 1:  # the connection drops before `end`
            return httpx.Response(200, content=sse(("metric", {"step": 1}, 4)))
        return httpx.Response(200, content=sse(("metric", {"step": 2}, 5),
                                               ("end", {"status": "succeeded"}, 5)))

    events = list(Client("http://x", transport=httpx.MockTransport(handler)).events(3))
    assert [e.data.get("step") for e in events] == [1, 2, None]
    assert requests == [None, "4"]


def test_events_of_a_missing_job_raise():
    transport = httpx.MockTransport(lambda r: httpx.Response(404, json={"detail": "no job"}))
    with pytest.raises(ApiError, match="no job"):
        list(Client("http://x", transport=transport).events(9))


def tar_bytes(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def download_transport(archive: bytes) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/checkpoints"):
            return httpx.Response(200, json=[{"name": "checkpoint-4", "step": 4},
                                             {"name": "checkpoint-8", "step": 8}])
        assert request.url.raw_path.endswith(b"/checkpoints/checkpoint-8/download")
        return httpx.Response(200, content=archive)

    return httpx.MockTransport(handler)


def test_download_picks_the_latest_checkpoint_without_final_and_unpacks(tmp_path: Path):
    archive = tar_bytes({"job-3-checkpoint-8/config.json": b"{}"})
    client = Client("http://x", transport=download_transport(archive))
    path = client.download(3, dest=tmp_path)
    assert path == tmp_path / "job-3-checkpoint-8"
    assert (path / "config.json").read_bytes() == b"{}"
    assert [p.name for p in tmp_path.iterdir()] == ["job-3-checkpoint-8"]


def test_download_refuses_an_archive_that_escapes(tmp_path: Path):
    archive = tar_bytes({"../../evil.txt": b"x"})
    client = Client("http://x", transport=download_transport(archive))
    with pytest.raises(tarfile.TarError):
        client.download(3, dest=tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_a_checkpoint_name_is_one_encoded_path_segment(tmp_path: Path):
    paths = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path)
        return httpx.Response(404, json={"detail": "no"})

    client = Client("http://x", transport=httpx.MockTransport(handler))
    with pytest.raises(ApiError):
        client.download(3, "../../etc", dest=tmp_path)
    assert paths == [b"/api/v1/jobs/3/checkpoints/..%2F..%2Fetc/download"]


# ---------------------------------------------------------------- the progress line


def test_render_shows_step_percent_loss_eval_metric_and_eta():
    line = render(3, snapshot("running", 4, **{"train/loss": 0.41234, "eval/loss": 0.5,
                                                "eval/accuracy": 0.8125}), fancy=False)
    assert line == ("job 3 running   |##########--------------|  40% step 4/10 loss 0.4123 "
                    "eval/accuracy 0.8125 ETA 01:05")


def test_eval_metric_prefers_accuracy_then_any_quality_metric():
    assert eval_metric({"eval/loss": 1, "eval/f1": 0.5}) == ("eval/f1", 0.5)
    assert eval_metric({"eval/loss": 1, "eval/runtime": 3, "eval/mcc": 0.1}) == ("eval/mcc", 0.1)
    assert eval_metric({"eval/loss": 1}) is None
    assert clock(3725) == "1:02:05" and clock(None) == "--:--"


def test_a_plain_stream_gets_a_line_per_status_not_per_step():
    out = io.StringIO()
    line = ProgressLine(out)
    for step in range(5):
        line.update(3, snapshot("running", step))
    line.update(3, snapshot("succeeded", 10))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "succeeded" in lines[1] and "\r" not in out.getvalue()


@pytest.mark.parametrize(("status", "code"), [("succeeded", 0), ("failed", 1),
                                              ("cancelled", 2)])
def test_watch_exit_code_follows_the_job(status, code, monkeypatch, capsys):
    error = {"type": "ValueError", "message": "bad", "traceback": "", "hint": "fix it"}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/metrics"):
            return httpx.Response(200, json={"job_id": 3, "series": {}, "last_id": 1})
        if request.url.path.endswith("/events"):
            assert request.headers["last-event-id"] == "1"
            return httpx.Response(200, content=sse(
                ("status", snapshot("running", 2), 1),
                ("metric", {"name": "train/loss", "step": 3, "value": 0.3}, 2),
                ("status", snapshot(status, 3), 2), ("end", {"status": status}, 2)))
        return httpx.Response(200, json=job(status, error=error if status == "failed" else None))

    client = Client("http://x", transport=httpx.MockTransport(handler))
    assert cli_remote.watch(client, 3) == code
    err = capsys.readouterr().err
    assert f"job 3 {status} in 01:05" in err
    if status == "failed":
        assert "ValueError: bad" in err and "hint: fix it" in err


def test_predict_tries_final_else_the_latest_checkpoint():
    sent: list[tuple[str, dict]] = []
    checkpoints = [{"name": "checkpoint-2", "step": 2}, {"name": "checkpoint-4", "step": 4}]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=checkpoints)
        sent.append((request.url.path, json.loads(request.content)))
        return httpx.Response(200, json={"predictions": [{"row": 0, "prediction": "pos"}],
                                         "checkpoint": "checkpoint-4", "device": "cpu",
                                         "seconds": 0.01})

    client = Client("http://x", transport=httpx.MockTransport(handler))
    answer = client.predict(3, [{"text": "fine"}], max_new_tokens=8)
    assert answer["predictions"][0]["prediction"] == "pos"
    assert sent == [("/api/v1/jobs/3/checkpoints/checkpoint-4/predict",
                     {"inputs": [{"text": "fine"}], "max_new_tokens": 8})]
    client.predict(3, [{"text": "fine"}], "final")
    assert sent[-1] == ("/api/v1/jobs/3/checkpoints/final/predict", {"inputs": [{"text": "fine"}]})


def test_command_line_texts_become_the_tasks_input():
    pair = {"dataset": {"text_fields": ["sentence1", "sentence2"]}}
    assert input_from_texts(pair, ["a", "b"]) == {"sentence1": "a", "sentence2": "b"}
    with pytest.raises(ValueError, match="takes 2 text"):
        input_from_texts(pair, ["a"])
    ner = {"task": "token-classification", "dataset": {"tokens_field": "words"}}
    assert input_from_texts(ner, ["anna flew"]) == {"words": "anna flew"}
    chat = {"task": "causal-lm-sft", "dataset": {"messages_field": "messages"}}
    assert input_from_texts(chat, ["hi"]) == {"messages": "hi"}


def test_a_prediction_prints_as_one_line_per_task():
    assert describe_prediction({"prediction": "pos", "probabilities": {"neg": 0.1, "pos": 0.9}}
                               ) == "pos\t(pos 0.900  neg 0.100)"
    assert describe_prediction({"predictions": [], "probabilities": {"a": 0.2}}) == \
        "(no label)\t(a 0.200)"
    assert describe_prediction({"prediction": 1.23456, "inputs": {}}) == "1.2346"
    assert describe_prediction({"tokens": ["anna", "smith", "ran"], "entities": [
        {"type": "PER", "start": 0, "end": 2}]}) == "[anna smith](PER) ran"
    assert describe_prediction({"generated": " Paris"}) == " Paris"
