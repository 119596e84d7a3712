"""POST/GET/DELETE /api/v1/datasets: checks, summaries, limits, and nothing left on disk."""
from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.config import get_settings
from app.datasets import service
from app.errors import Invalid
from tests.app.factories import SPEC, make_job
from tests.fixtures import reset_caches

CSV = b"text,label\nthe movie was good,pos\nthe plot was bad,neg\nfun film,pos\n"


def upload(client, name: str, data: bytes, **form):
    return client.post("/api/v1/datasets", files={"file": (name, io.BytesIO(data))},
                       data=form or None)


def parquet_bytes(rows: dict) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.table(rows), out)
    return out.getvalue()


def uploads(client) -> list[str]:
    root = get_settings().uploads_dir
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


@pytest.mark.parametrize(("name", "data", "fmt", "columns", "rows"), [
    ("reviews.csv", CSV, "csv", ["text", "label"], 3),
    ("reviews.csv", b"\xef\xbb\xbf" + CSV.replace(b"\n", b"\r\n"), "csv", ["text", "label"], 3),
    ("reviews.tsv", b"text\tlabel\n\"a, b\"\tpos\n", "tsv", ["text", "label"], 1),
    ("reviews.jsonl", b'{"text": "good", "label": 1}\n\n{"text": "bad", "label": 0}\n',
     "json", ["text", "label"], 2),
    ("pairs.parquet", parquet_bytes({"s1": ["a", "b"], "s2": ["c", "d"], "label": [0, 1]}),
     "parquet", ["s1", "s2", "label"], 2),
    ("unicode.csv", "text,label\nçà va très bien ✓,pos\n".encode(), "csv", ["text", "label"], 1),
])
def test_upload_checks_and_describes_each_format(client, name, data, fmt, columns, rows):
    response = upload(client, name, data)
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["format"], body["columns"], body["num_rows"]) == (fmt, columns, rows)
    assert body["id"].startswith("ds-") and body["filename"] == name
    assert len(body["preview"]) == rows and set(body["preview"][0]) <= set(columns)
    assert body["size_bytes"] == len(data)
    assert client.get(f"/api/v1/datasets/{body['id']}").json()["num_rows"] == rows
    assert uploads(client) == [body["id"]]


def test_value_counts_of_a_chosen_label_column(client):
    body = upload(client, "r.csv", CSV, label_column="label").json()
    assert body["label"] == {"column": "label", "counts": {"pos": 2, "neg": 1}, "distinct": 2,
                             "missing": 0, "rows_counted": 3}
    text = client.get(f"/api/v1/datasets/{body['id']}", params={"label_column": "text"}).json()
    assert text["label"]["column"] == "text" and text["label"]["distinct"] == 3
    missing = client.get(f"/api/v1/datasets/{body['id']}", params={"label_column": "nope"})
    assert missing.status_code == 422 and "text, label" in missing.text


def test_jsonl_labels_keep_their_types_and_count_missing(client):
    data = b'{"t": "a", "y": 1}\n{"t": "b", "y": 1}\n{"t": "c", "y": null}\n{"t": "d"}\n'
    body = upload(client, "x.jsonl", data, label_column="y").json()
    assert body["label"] == {"column": "y", "counts": {"1": 2}, "distinct": 2, "missing": 2,
                             "rows_counted": 4}


@pytest.mark.parametrize(("name", "data", "reason"), [
    ("x.csv", b"", "empty"),
    ("x.csv", b"text,label\n", "no data rows"),
    ("x.csv", b"\n\n", "empty"),
    ("x.csv", "text,label\ncafé,1\n".encode("latin-1"), "not valid UTF-8"),
    ("x.csv", "text,label\nhi,1\n".encode("utf-16"), "UTF-16"),
    ("x.csv", b"text,label\na,1,extra\n", "line 2 has 3 fields"),
    ("x.csv", b"text,,label\na,b,c\n", "empty column name"),
    ("x.csv", b"text,text\na,b\n", "repeats column names"),
    ("x.csv", b"1,2\n3,4\n", "looks like data"),
    ("x.csv", b"text\tlabel\na\tb\n", "tab-separated"),
    ("x.csv", b'text,label\n"unclosed,1\n', "not valid CSV"),
    ("x.csv", b"text,label\na\x00b,1\n", "NUL byte"),
    ("x.jsonl", b'{"a": 1}\n{"a": \n', "line 2 is not valid JSON"),
    ("x.jsonl", b'{"a": 1}\n[1, 2]\n', "not an object"),
    ("x.json", b'[{"a": 1}]\n', "JSON array"),
    ("x.parquet", b"PAR1 not really", "Parquet"),
    ("x.parquet", parquet_bytes({"a": pa.array([], pa.int64())}), "no data rows"),
    ("x.xlsx", b"PK\x03\x04", "unsupported file type"),
    ("noext", CSV, "unsupported file type"),
])
def test_unreadable_files_get_422_with_the_reason_and_leave_nothing(client, name, data, reason):
    response = upload(client, name, data)
    assert response.status_code == 422, response.text
    assert reason in json.dumps(response.json())
    assert uploads(client) == []
    assert client.get("/api/v1/datasets").json()["total"] == 0


def test_a_missing_label_column_at_upload_is_422_and_leaves_nothing(client):
    response = upload(client, "x.csv", CSV, label_column="target")
    assert response.status_code == 422 and "no column named 'target'" in response.text
    assert uploads(client) == []


@pytest.fixture
def one_mb_limit(settings_env, monkeypatch):
    monkeypatch.setenv("TUNEDECK_MAX_UPLOAD_MB", "1")
    reset_caches()


def test_an_oversized_file_is_413_and_leaves_nothing(one_mb_limit, client):
    big = b"text,label\n" + b"the movie was good,pos\n" * 60_000  # ~1.4 MB
    response = upload(client, "big.csv", big)
    assert response.status_code == 413 and "1 MB" in response.json()["detail"]
    assert uploads(client) == []


def test_an_oversized_chunked_body_is_cut_off_while_streaming(one_mb_limit, client):
    def body():
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.csv"\r\n\r\n'
        yield b"text,label\n"
        for _ in range(400):
            yield b"a" * 10_000 + b",1\n"
        yield b"\r\n--b--\r\n"

    response = client.post("/api/v1/datasets", content=body(),
                           headers={"content-type": "multipart/form-data; boundary=b"})
    assert response.status_code == 413
    assert uploads(client) == []


def test_a_declared_oversized_length_is_refused_before_reading(one_mb_limit, client):
    response = client.post("/api/v1/datasets", content=b"x",
                           headers={"content-type": "multipart/form-data; boundary=b",
                                    "content-length": str(50 * 1024 * 1024)})
    assert response.status_code == 413


def test_a_file_at_the_limit_is_accepted(one_mb_limit, client):
    row = b"the movie was good,pos\n"
    data = b"text,label\n" + row * ((1024 * 1024 - 11) // len(row))
    assert upload(client, "edge.csv", data).status_code == 201


def test_upload_without_a_file_is_422(client):
    assert client.post("/api/v1/datasets", data={"label_column": "x"}).status_code == 422


def test_a_hostile_file_name_stays_inside_its_folder(client):
    body = upload(client, "../../../etc/x.csv", CSV).json()
    stored = get_settings().uploads_dir / body["id"]
    assert [p.name for p in stored.iterdir()] == ["x.csv"]
    assert not (get_settings().data_dir.parent / "etc").exists()


def test_list_get_and_delete(client):
    first = upload(client, "a.csv", CSV).json()
    second = upload(client, "b.jsonl", b'{"text": "x", "label": 1}\n').json()
    listed = client.get("/api/v1/datasets").json()
    assert listed["total"] == 2
    assert {d["id"] for d in listed["items"]} == {first["id"], second["id"]}
    assert client.delete(f"/api/v1/datasets/{first['id']}").status_code == 204
    assert client.get(f"/api/v1/datasets/{first['id']}").status_code == 404
    assert client.delete(f"/api/v1/datasets/{first['id']}").status_code == 404
    assert uploads(client) == [second["id"]]


def test_a_job_spec_refers_to_an_upload_by_id(client):
    dataset = upload(client, "a.csv", CSV).json()
    spec = {**SPEC, "dataset": {**SPEC["dataset"], "source": "upload", "path": dataset["id"]}}
    assert client.post("/api/v1/jobs", json=spec).status_code == 201
    spec["dataset"]["path"] = "ds-000000000000"
    missing = client.post("/api/v1/jobs", json=spec)
    assert missing.status_code == 422 and "no uploaded dataset" in missing.text


def test_an_upload_in_use_by_an_unfinished_job_cannot_be_deleted(client):
    dataset = upload(client, "a.csv", CSV).json()
    spec = {**SPEC, "dataset": {**SPEC["dataset"], "source": "upload", "path": dataset["id"]}}
    job_id = make_job(spec=spec)
    refused = client.delete(f"/api/v1/datasets/{dataset['id']}")
    assert refused.status_code == 409 and str(job_id) in refused.json()["detail"]
    assert uploads(client) == [dataset["id"]]
    client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert client.delete(f"/api/v1/datasets/{dataset['id']}").status_code == 204


def test_a_rolled_back_upload_leaves_no_file(settings_env):
    from app.db import session_scope

    with pytest.raises(RuntimeError), session_scope() as session:
        service.save_upload(session, get_settings(), "a.csv", io.BytesIO(CSV))
        raise RuntimeError("the request failed after the upload")
    assert list(get_settings().uploads_dir.iterdir()) == []


def test_the_stored_file_is_what_the_worker_loads(session):
    dataset = service.save_upload(session, get_settings(), "a.tsv",
                                  io.BytesIO(b"text\tlabel\nx\t1\n"))
    assert dataset.format == "tsv"
    path = service.file_path(dataset)
    assert path.read_bytes() == b"text\tlabel\nx\t1\n"
    assert not dataset.path.startswith("/")  # relative to the data directory


def test_preview_values_are_json_safe(session):
    data = b'{"x": NaN, "y": Infinity, "z": "' + b"long " * 200 + b'"}\n'
    dataset = service.save_upload(session, get_settings(), "a.jsonl", io.BytesIO(data))
    row = service.describe(dataset).preview[0]
    assert row["x"] is None and row["y"] is None and len(row["z"]) < 400
    json.dumps(row, allow_nan=False)


def test_describe_rejects_an_unknown_label_column(session):
    dataset = service.save_upload(session, get_settings(), "a.csv", io.BytesIO(CSV))
    with pytest.raises(Invalid):
        service.describe(dataset, "nope")
