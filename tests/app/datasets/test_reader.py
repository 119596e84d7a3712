"""Uploads cost bounded work: crafted files that took minutes of server CPU answer in seconds."""
from __future__ import annotations

import io
import threading
import time

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tests.fixtures import LiveServer, reset_caches

WIDE_COLUMNS = 100_000
DECLARED_ROWS = 100_000_000


def wide_csv(columns: int = WIDE_COLUMNS) -> bytes:
    """A header of `columns` distinct names and one row: ~0.9 MB for 100,000 columns."""
    header = ",".join(f"c{i}" for i in range(columns))
    return (header + "\n" + ",".join("1" * columns) + "\n").encode()


def tall_parquet(rows: int = DECLARED_ROWS) -> bytes:
    """One int8 label column of `rows` zeros: a few hundred KB that declares `rows` rows."""
    out = io.BytesIO()
    pq.write_table(pa.table({"label": np.zeros(rows, dtype=np.int8)}), out,
                   row_group_size=rows // 10)
    return out.getvalue()


def upload(client, name: str, data: bytes, **form):
    return client.post("/api/v1/datasets", files={"file": (name, io.BytesIO(data))},
                       data=form or None)


def timed(call):
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def test_a_100000_column_csv_is_a_quick_422_naming_the_limit(client):
    data = wide_csv()
    response, seconds = timed(lambda: upload(client, "wide.csv", data))
    assert response.status_code == 422, response.text
    message = response.json()["detail"][0]["msg"]
    assert "100,000 columns" in message and "TUNEDECK_MAX_UPLOAD_COLUMNS" in message
    assert "1,000" in message
    assert seconds < 5, f"{seconds:.1f}s for a {len(data):,}-byte header"


def test_the_column_limit_is_a_setting_and_names_are_checked_in_linear_time(
        settings_env, monkeypatch, client):
    monkeypatch.setenv("TUNEDECK_MAX_UPLOAD_COLUMNS", str(WIDE_COLUMNS + 1))
    reset_caches()
    names = [f"c{i}" for i in range(WIDE_COLUMNS)] + ["c7"]
    data = (",".join(names) + "\n" + ",".join("1" * len(names)) + "\n").encode()
    response, seconds = timed(lambda: upload(client, "wide.csv", data))
    assert response.status_code == 422 and "repeats column names: c7" in response.text
    assert seconds < 5, f"{seconds:.1f}s for the duplicate check of {len(names):,} names"


def test_a_jsonl_file_whose_keys_pass_the_limit_is_422(settings_env, monkeypatch, client):
    monkeypatch.setenv("TUNEDECK_MAX_UPLOAD_COLUMNS", "3")
    reset_caches()
    data = b'{"a": 1, "b": 2}\n{"c": 3, "d": 4}\n'
    response = upload(client, "x.jsonl", data)
    assert response.status_code == 422
    assert "4 columns; the limit is 3 (TUNEDECK_MAX_UPLOAD_COLUMNS)" in response.text


def test_a_parquet_file_declaring_100m_rows_answers_with_a_bounded_summary(client):
    data = tall_parquet()
    assert len(data) < 2_000_000
    response, seconds = timed(lambda: upload(client, "tall.parquet", data,
                                             label_column="label"))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["num_rows"] == DECLARED_ROWS  # from the footer, not by reading the rows
    assert body["label"]["rows_counted"] == 1_000_000  # TUNEDECK_MAX_STATS_ROWS' default
    assert body["label"]["counts"] == {"0": 1_000_000}
    assert seconds < 5, f"{seconds:.1f}s for {len(data):,} bytes"
    again, seconds = timed(lambda: client.get(f"/api/v1/datasets/{body['id']}"))
    assert again.json()["label"]["rows_counted"] == 1_000_000 and seconds < 5


def test_a_parquet_file_with_too_many_columns_is_422(settings_env, monkeypatch, client):
    monkeypatch.setenv("TUNEDECK_MAX_UPLOAD_COLUMNS", "2")
    reset_caches()
    out = io.BytesIO()
    pq.write_table(pa.table({"a": [1], "b": [2], "c": [3]}), out)
    response = upload(client, "x.parquet", out.getvalue())
    assert response.status_code == 422 and "3 columns; the limit is 2" in response.text


def test_healthz_answers_while_a_large_upload_is_processed(settings_env, tmp_path):
    """A CSV that takes the server seconds to check (all rows are parsed) is checked in a
    separate process (app/datasets/checker.py); /healthz keeps answering meanwhile."""
    server = LiveServer(settings_env, tmp_path / "serve.log", with_worker=False)
    data = b"text,label\n" + b"the movie was good,pos\n" * 1_500_000  # ~33 MB
    done = threading.Event()
    result: list[httpx.Response] = []

    def send() -> None:
        try:
            result.append(httpx.post(server.url + "/api/v1/datasets", timeout=120,
                                     files={"file": ("big.csv", data)}))
        finally:
            done.set()

    try:
        sender = threading.Thread(target=send)
        sender.start()
        latencies = []
        while not done.is_set():
            latency = timed(lambda: httpx.get(server.url + "/healthz", timeout=5))
            assert latency[0].status_code == 200
            latencies.append(latency[1])
            time.sleep(0.05)
        sender.join()
    finally:
        server.stop()
    assert result and result[0].status_code == 201, result
    assert len(latencies) >= 3, "the upload ended too soon to measure"
    # The latency goal is benchmark P10's row (python -m benchmarks --only P10); the suite
    # shares two cores with other work, so the bound here is that /healthz answers, every
    # time, well inside its timeout.
    assert max(latencies) < 3.0, f"slowest /healthz {max(latencies):.2f}s"
