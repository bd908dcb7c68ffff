"""`novanet api` as a process: serves, logs JSON on request, drains on SIGTERM."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from apiprocs import api_process
from apisupport import make_ctx

from novanet.service import floating as F
from novanet.service import tokens


def test_serves_logs_json_and_drains_on_sigterm(db_url: str, tmp_path: Path) -> None:
    ctx = make_ctx(db_url)
    tok = tokens.create(ctx, "admin", user="ops", role="admin")["token"]
    h = {"X-Auth-Token": tok}
    log = tmp_path / "api.log"
    try:
        with api_process(db_url, "--log-json", log=log) as (base, proc):
            assert httpx.get(f"{base}/v2.1/admin/os-floating-ips", headers=h).json() == {"floating_ips": []}
            assert httpx.get(f"{base}/v2.1/admin/os-floating-ips").status_code == 401
            metrics = httpx.get(f"{base}/metrics").text
            assert 'novanet_api_requests_total{method="GET",route=' in metrics
            # a slow request in flight when SIGTERM arrives still gets its whole answer
            result: dict[str, Any] = {}
            body = {"floating_ips_bulk_create": {"ip_range": "100.64.0.0/15", "pool": "big"}}

            def slow() -> None:
                r = httpx.post(f"{base}/v2/admin/os-floating-ips-bulk", json=body, headers=h, timeout=120)
                result["status"] = r.status_code

            t = threading.Thread(target=slow)
            t.start()
            time.sleep(0.5)  # the request is being served (it takes seconds)
            proc.send_signal(signal.SIGTERM)
            t.join(timeout=120)
            assert proc.wait(timeout=60) == 0
        assert result["status"] == 200
        assert len(F.list_floating(ctx, project_id=None)) == 2**17 - 2
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        assert any("401" in rec["message"] or "refused" in rec["message"] for rec in lines), lines[-5:]
        assert any(rec["logger"] == "novanet.api.auth" and "anonymous" in rec["message"] for rec in lines)
    finally:
        ctx.engine.dispose()
