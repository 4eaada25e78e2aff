"""A lean client for a gradio endpoint, for `bench stream`: the same HTTP requests gradio_client sends (upload the
file, join the queue, read the server-sent events, download the result file), timed as each message arrives.

gradio_client reads its event stream in a worker thread and hands messages over by polling every 50 ms (its
`utils.py`), and its iterator polls every millisecond: on a 2-core machine that adds up to a message's wait and takes
CPU time from the server. This client reads the events where they arrive, so what it times is the server's cost.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from dataclasses import dataclass, field

import httpx


@dataclass
class Endpoint:
    """What joining an endpoint's queue needs: its fn_index and every parameter's default (by position), and one
    session for every call, as gradio_client keeps one per client and a browser page one per page (a new session
    costs gradio a state of every component on its first request: about 7 ms on the studio here)."""

    base: str  # http://host:port
    fn_index: int
    names: list[str]
    defaults: list
    session: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def of(cls, http: httpx.Client, base: str, api_name: str) -> Endpoint:
        config = http.get(f"{base}/config").raise_for_status().json()
        fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == api_name.strip("/"))
        info = http.get(f"{base}/gradio_api/info").raise_for_status().json()
        parameters = info["named_endpoints"]["/" + api_name.strip("/")]["parameters"]
        names = [p["parameter_name"] for p in parameters]
        return cls(base, fn_index, names, [p.get("parameter_default") for p in parameters])


@dataclass
class Streamed:
    """One call: seconds from the start to each update (process_generating / process_completed) and the last
    update's data, the result file downloaded."""

    times: list[float] = field(default_factory=list)
    updates: list[list] = field(default_factory=list)
    total: float = 0.0


def _apply(value, edits: list):
    """One output's diff (gradio sends a generator's updates after the first as [op, path, value] edits)."""
    for op, path, *new in edits:
        new = new[0] if new else None
        if not path:
            value = value + new if op == "append" else new
            continue
        parent = value
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        if op == "replace":
            parent[key] = new
        elif op == "append":
            parent[key] = parent[key] + new
        elif op == "add":
            if isinstance(parent, list):
                parent.insert(key, new)
            else:
                parent[key] = new
        elif op == "delete":
            del parent[key]
    return value


def _events(response: httpx.Response):
    for line in response.iter_lines():
        if line.startswith("data:"):
            yield json.loads(line[5:])


def call(http: httpx.Client, endpoint: Endpoint, file: str, *values, **named) -> Streamed:
    """Upload `file` as the first input, fill the rest from `values` then the defaults (`named` by parameter name)
    and stream the call to the end."""
    out, start = Streamed(), time.perf_counter()
    with open(file, "rb") as f:
        path = http.post(f"{endpoint.base}/gradio_api/upload", files={"files": f}).raise_for_status().json()[0]
    data = [{"path": path, "meta": {"_type": "gradio.FileData"}}, *values, *endpoint.defaults[1 + len(values) :]]
    for name, value in named.items():
        data[endpoint.names.index(name)] = value
    body = {
        "data": data,
        "fn_index": endpoint.fn_index,
        "session_hash": endpoint.session,
        "event_data": None,
        "trigger_id": None,
    }
    http.post(f"{endpoint.base}/gradio_api/queue/join", json=body).raise_for_status()
    params = {"session_hash": endpoint.session}
    with http.stream("GET", f"{endpoint.base}/gradio_api/queue/data", params=params, timeout=600) as events:
        for message in _events(events):
            kind = message.get("msg")
            if kind in ("process_generating", "process_completed"):
                out.times.append(time.perf_counter() - start)
                output = message.get("output") or {}
                if kind == "process_completed" and not message.get("success", True):
                    raise RuntimeError(f"the endpoint failed: {output.get('error')}")
                data = output.get("data")
                if kind == "process_generating" and out.updates:  # a diff against the previous update
                    data = [_apply(copy.deepcopy(v), edits) for v, edits in zip(out.updates[-1], data, strict=True)]
                out.updates.append(data)
                if kind == "process_completed":
                    break
    result = (out.updates[-1] or [None])[0]
    if isinstance(result, dict) and result.get("url"):  # the result file, as gradio_client downloads it
        http.get(result["url"]).raise_for_status()
    out.total = time.perf_counter() - start
    return out
