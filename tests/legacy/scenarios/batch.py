"""Batch jobs: ``batch_async_request`` with urls and with inputs (a value holding a comma and both quote
characters, which the client's single-quote CSV must carry intact), then ``get_batch_async_response`` until
the job ends, and the results file behind ``result``."""

from __future__ import annotations

import json
from typing import Any

from _common import FILES, NO_REQUIREMENTS, api_error, client, download, emit, name, unpickle_url, wait_batch

TRICKY = "it's \"a,b\""


def predict(x: Any = None, y: str = "") -> Any:
    if isinstance(x, bytes):
        return {"len": len(x)}
    if x == "boom":
        raise ValueError("batch boom")
    return {"x": x, "y": y}


def run_job(c: Any, bundle: str, **kwargs: Any) -> dict[str, Any]:
    job_id = c.batch_async_request(bundle, **kwargs)
    first = c.get_batch_async_response(job_id)
    final = wait_batch(c, job_id)
    return {"job_id": job_id, "first_status": first["status"], "final": final,
            "results": json.loads(download(final["result"])) if final.get("result") else None}


def main() -> dict[str, Any]:
    c = client()
    bundle = name("bundle")
    c.create_model_bundle(bundle, {}, predict_fn_or_cls=predict, requirements=NO_REQUIREMENTS)
    inputs = [{"x": 1}, {"x": 2, "y": "a,b"}, {"x": 3, "y": TRICKY}, {"x": "boom"}]
    by_inputs = run_job(c, bundle, inputs=inputs, batch_task_options={"cpus": 2, "max_workers": 1},
                        labels={"a": "b"})
    by_urls = run_job(c, bundle, urls=[f"{FILES}/input.bin", f"{FILES}/small.txt"])
    pickled = run_job(c, bundle, inputs=[{"x": 5}], serialization_format="pickle")
    pickled_values = [unpickle_url(item["result_url"]) for item in pickled["results"] or []]
    return {
        "tricky": TRICKY, "inputs": by_inputs, "urls": by_urls, "pickled": pickled,
        "pickled_values": pickled_values,
        "bad_format": api_error(c.batch_async_request, bundle, inputs=[{"x": 1}], serialization_format="xml"),
        "missing_bundle": api_error(c.batch_async_request, name("no-such-bundle"), inputs=[{"x": 1}]),
        "missing_job": api_error(c.get_batch_async_response, "no-such-job"),
    }


if __name__ == "__main__":
    emit(main())
