"""GPU peak memory and utilisation, as the worker stores them, in the API and the job list."""
from __future__ import annotations

import re

from app.jobs.models import JobStatus
from tests.app.factories import make_job


def test_api_reports_gpu_peak_and_utilisation(auth_client):
    job_id = make_job(JobStatus.running, gpu_peak_memory_mb=2048.0, gpu_utilization=87.4)
    job = auth_client.get(f"/api/v1/jobs/{job_id}").json()
    assert job["gpu_peak_memory_mb"] == 2048.0
    assert job["gpu_utilization"] == 87.4
    listed = auth_client.get("/api/v1/jobs").json()["items"][0]
    assert listed["gpu_utilization"] == 87.4


def test_api_reports_none_before_a_gpu_is_used(auth_client):
    job_id = make_job(JobStatus.running)
    job = auth_client.get(f"/api/v1/jobs/{job_id}").json()
    assert job["gpu_peak_memory_mb"] is None and job["gpu_utilization"] is None


def test_job_list_and_page_show_gpu_peak_and_utilisation(client):
    job_id = make_job(JobStatus.running, gpu_peak_memory_mb=2048.0, gpu_utilization=87.4)
    html = client.get("/jobs").text
    row = re.search(rf'<tr id="job-{job_id}".*?</tr>', html, re.DOTALL).group(0)
    assert "2 GB" in row and "87%" in row
    page = client.get(f"/jobs/{job_id}").text
    assert "GPU peak" in page and "GPU busy" in page and "87%" in page


def test_cpu_jobs_show_no_gpu_figures(client):
    job_id = make_job(JobStatus.succeeded)
    html = client.get("/jobs").text
    row = re.search(rf'<tr id="job-{job_id}".*?</tr>', html, re.DOTALL).group(0)
    assert '<td class="num nowrap"></td>' in row and " GB" not in row
