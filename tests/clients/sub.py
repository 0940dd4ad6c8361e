"""Reads one event stream with httpx-sse and prints what it dispatches, one JSON line each.

Usage: python3 sub.py URL. Prints {"open": STATUS} once the head is in, then one line per event
httpx-sse yields ({"event", "data", "id", "retry"}), then {"end": true} when the server closes
(with "error" when the connection failed). Over HTTPS it trusts only the CA certificate named by
SSE_CA (PEM), when set.
"""
import json
import os
import ssl
import sys

import httpx
from httpx_sse import connect_sse


def out(obj):
    print(json.dumps(obj), flush=True)


ca = os.environ.get("SSE_CA")
verify = ssl.create_default_context(cafile=ca) if ca else True
try:
    with httpx.Client(timeout=httpx.Timeout(10.0, read=15.0), verify=verify) as client:
        with connect_sse(client, "GET", sys.argv[1]) as source:
            out({"open": source.response.status_code})
            for ev in source.iter_sse():
                out({"event": ev.event, "data": ev.data, "id": ev.id, "retry": ev.retry})
except httpx.TransportError as e:
    out({"end": True, "error": repr(e)})
    sys.exit(0)
out({"end": True})
