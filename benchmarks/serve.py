"""The HTTP endpoint under load on loopback (`python -m benchmarks.serve fraud sentiment [--seconds 60]`).

Per domain: a real `aiflow serve-model` process (uvicorn, 127.0.0.1), then a bounded async client sending
single-item requests from 1, 8 and 32 concurrent clients for `--seconds` each (60 by default), with batching
on and then off: p50 / p99 latency, requests per second, errors (any answer but 200, or none). Goals (issue
16): p99 <= 50 ms at 8 clients for fraud and sentiment on 2 cores with zero errors; batching >= 2x the
requests per second of no batching at equal p99.

The client shares the 2 cores with the server, so it must cost little: it writes each request's bytes,
encoded once, on a keep-alive HTTP/1.1 connection per client and reads the status line, headers and
`Content-Length` body back (asyncio streams, ~0.1 ms of CPU per request; the client CPU per request is
recorded). httpx costs 1.3-1.7 ms per request, which at 8 clients held the server back and was most of the
measured latency: `--client httpx` measures with it, for comparison.

The model: a throwaway copy of the repository trained by `dvc repro` with the tests' small params
(the fraud MLP and the sentiment ensemble have the same architecture at any data size), or `--repo` with
promoted champions. Results: benchmarks/results/serve_<domain>.json, with the machine's load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np

from benchmarks.common import BIN, context, print_table, save, subprocess_env

LEVELS = (1, 8, 32)


def start_server(
    repo: Path,
    domain: str,
    port: int,
    *args: str,
    code_root: Path | None = None,
    log: Path | None = None,
    timeout: float = 180,
) -> subprocess.Popen:
    """`aiflow serve-model` in `repo` on 127.0.0.1:`port`, returned once /health answers."""
    out = (log or Path(tempfile.mkstemp(suffix=".log")[1])).open("w")
    proc = subprocess.Popen(
        [str(BIN / "aiflow"), "serve-model", domain, "--port", str(port), *args],
        cwd=repo,
        env=subprocess_env(code_root or repo),
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve-model exited {proc.returncode}:\n{Path(out.name).read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"serve-model did not answer within {timeout} s:\n{Path(out.name).read_text()[-3000:]}")


async def load(
    url: str, bodies: list[dict[str, Any]], clients: int, seconds: float, client: str = "raw", timeout: float = 30
) -> dict[str, Any]:
    """`clients` concurrent clients, each sending the next body as soon as its answer arrives, for `seconds`."""
    latencies: list[float] = []
    failures: list[str] = []
    stop = time.perf_counter() + seconds
    counter = iter(range(10**9))
    send = _raw_sender(url, bodies, timeout) if client == "raw" else _httpx_sender(url, bodies, clients, timeout)

    async def one_client() -> None:
        async with send() as post:
            while time.perf_counter() < stop:
                began = time.perf_counter()
                failure = await post(next(counter) % len(bodies))
                latencies.append(time.perf_counter() - began)
                if failure:
                    failures.append(failure)

    began, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    ms = np.asarray(latencies) * 1000
    return {
        "clients": clients,
        "requests": len(latencies),
        "seconds": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
        "errors": len(failures),
        "error_examples": failures[:3],
        "client_cpu_ms_per_request": round(cpu / max(len(latencies), 1) * 1000, 3),
    }


Post = Callable[[int], Awaitable[str | None]]  # sends bodies[i]; the failure, or None for a 200


def _raw_sender(
    url: str, bodies: list[dict[str, Any]], timeout: float
) -> Callable[[], AbstractAsyncContextManager[Post]]:
    """Requests as bytes on one keep-alive connection per client; a connection that fails is opened again."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = []
    for body in bodies:
        payload = json.dumps(body).encode()
        head = f"POST {parts.path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
        requests.append(f"{head}content-length: {len(payload)}\r\n\r\n".encode() + payload)

    @asynccontextmanager
    async def connection() -> AsyncIterator[Post]:
        streams: list[Any] = []

        async def post(i: int) -> str | None:
            try:
                if not streams:
                    streams.extend(await asyncio.open_connection(host, port))
                reader, writer = streams
                writer.write(requests[i])
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
                lines = head.decode("latin-1").split("\r\n")
                length = next(
                    (int(v) for k, _, v in (h.partition(":") for h in lines[1:]) if k.lower() == "content-length"), None
                )
                if length is None:
                    raise ConnectionError(f"no content-length: {lines[0]}")
                body = await asyncio.wait_for(reader.readexactly(length), timeout)
                status = int(lines[0].split(" ", 2)[1])
                return None if status == 200 else f"{status}: {body[:300].decode(errors='replace')}"
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError) as err:
                if streams:
                    streams.pop().close()
                    streams.clear()
                return f"{type(err).__name__}: {err}"

        try:
            yield post
        finally:
            if streams:
                streams[1].close()

    return connection


def _httpx_sender(
    url: str, bodies: list[dict[str, Any]], clients: int, timeout: float
) -> Callable[[], AbstractAsyncContextManager[Post]]:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)

    @asynccontextmanager
    async def connection() -> AsyncIterator[Post]:
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:

            async def post(i: int) -> str | None:
                try:
                    response = await http.post(url, json=bodies[i])
                except httpx.HTTPError as err:
                    return f"{type(err).__name__}: {err}"
                return None if response.status_code == 200 else f"{response.status_code}: {response.text[:300]}"

            yield post

    return connection


def fraud_bodies(n: int = 500, seed: int = 3) -> list[dict[str, Any]]:
    """Single-transaction requests from the synthetic generator (another seed than training)."""
    import pandas as pd

    from domains.fraud.params import SyntheticParams
    from domains.fraud.synthetic import generate_transactions

    tx = generate_transactions(SyntheticParams(n_customers=300, n_terminals=600, n_days=14), seed=seed).head(n)
    return [
        {
            "items": [
                {
                    "transaction_id": int(r.TRANSACTION_ID),
                    "tx_datetime": pd.Timestamp(r.TX_DATETIME).isoformat(),
                    "customer_id": int(r.CUSTOMER_ID),
                    "terminal_id": int(r.TERMINAL_ID),
                    "tx_amount": float(r.TX_AMOUNT),
                }
            ]
        }
        for r in tx.itertuples()
    ]


def sentiment_bodies(n: int = 500, seed: int = 3) -> list[dict[str, Any]]:
    """Single-review requests from the synthetic generator (another seed than training)."""
    from domains.sentiment.params import SyntheticParams
    from domains.sentiment.synthetic import generate_reviews

    train = max(n, SyntheticParams.model_fields["n_train"].metadata[0].ge)  # the generator has a floor
    docs = generate_reviews(SyntheticParams(n_train=train, n_test=20), ["neg", "pos"], seed).documents.head(n)
    return [{"items": [{"text": text}]} for text in docs["text"]]


BODIES = {"fraud": fraud_bodies, "sentiment": sentiment_bodies}


def _trained_repo(folder: Path, domains: list[str]) -> Path:
    from tests.conftest import GIT, copy_repo, run, set_domain_params, small_fraud_params
    from tests.sentiment.conftest import small_sentiment_params

    root = copy_repo(folder)
    sections = {"fraud": small_fraud_params(), "sentiment": {**small_sentiment_params()}}
    sections["sentiment"]["evaluate"]["candidate"] = "ensemble"
    for domain in domains:
        set_domain_params(root, domain, sections[domain])
    run([*GIT, "commit", "-qam", "bench params"], root)
    run(["dvc", "repro", *(f"report@{d}" for d in domains)], root)
    for domain in domains:
        run(["aiflow", "champion", "promote", domain], root)
    return root


def bench(
    repo: Path, domain: str, seconds: float, levels: tuple[int, ...], port: int, client: str, compare: bool
) -> dict[str, Any]:
    bodies = BODIES[domain]()
    url = f"http://127.0.0.1:{port}/predict"
    result: dict[str, Any] = {
        "domain": domain,
        "seconds_per_level": seconds,
        "request": "one item per request",
        "client": client,
    }
    for mode, args in (("batching", []), ("no_batching", ["--no-batching"])):
        server = start_server(repo, domain, port, *args, code_root=Path(__file__).resolve().parents[1])
        try:
            result["model"] = httpx.get(f"http://127.0.0.1:{port}/metadata").json()["version"]
            asyncio.run(load(url, bodies, 4, min(5.0, seconds), client))  # warm-up: imports, caches
            result[mode] = [asyncio.run(load(url, bodies, clients, seconds, client)) for clients in levels]
            if compare and mode == "batching":  # the same server at 8 clients, measured through httpx
                result["httpx_client_at_8"] = asyncio.run(load(url, bodies, 8, seconds, "httpx"))
        finally:
            server.terminate()
            server.wait(30)
    rows = [
        [f"{mode} ({client})", r["clients"], r["p50_ms"], r["p99_ms"], r["requests_per_s"], r["errors"]]
        for mode in ("batching", "no_batching")
        for r in result[mode]
    ]
    if "httpx_client_at_8" in result:
        r = result["httpx_client_at_8"]
        rows.append(["batching (httpx)", 8, r["p50_ms"], r["p99_ms"], r["requests_per_s"], r["errors"]])
    print_table(
        f"{domain}: single-item requests on loopback, {seconds:g} s per level (load {os.getloadavg()[0]:.1f})",
        ["mode (client)", "clients", "p50 ms", "p99 ms", "req/s", "errors"],
        rows,
    )
    at8 = {mode: next((r for r in result[mode] if r["clients"] == 8), None) for mode in ("batching", "no_batching")}
    if at8["batching"] and at8["no_batching"]:
        result["goals"] = {
            "p99_ms_at_8_clients": at8["batching"]["p99_ms"],
            "p99_goal_ms": 50,
            "errors": sum(r["errors"] for mode in ("batching", "no_batching") for r in result[mode]),
            "batching_speedup_at_8": round(
                at8["batching"]["requests_per_s"] / max(at8["no_batching"]["requests_per_s"], 1e-9), 2
            ),
        }
        print(json.dumps(result["goals"]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("domains", nargs="*", default=["fraud", "sentiment"], choices=sorted(BODIES))
    parser.add_argument("--seconds", type=float, default=60.0, help="per concurrency level and mode (default 60)")
    parser.add_argument("--levels", type=int, nargs="+", default=list(LEVELS))
    parser.add_argument("--repo", type=Path, help="a repository whose champions are promoted (default: train one)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw", help="the load generator (see above)")
    parser.add_argument("--compare-httpx", action="store_true", help="also 8 clients through httpx, batching on")
    args = parser.parse_args()
    before = context()
    with tempfile.TemporaryDirectory(prefix="aiflow-bench-serve-") as tmp:
        repo = args.repo.resolve() if args.repo else _trained_repo(Path(tmp), args.domains)
        for domain in args.domains:
            result = bench(repo, domain, args.seconds, tuple(args.levels), args.port, args.client, args.compare_httpx)
            result["repo"] = "given (--repo)" if args.repo else "throwaway copy, the tests' small params"
            save(f"serve_{domain}", result, {**before, "load_avg_1m_now": round(os.getloadavg()[0], 2)})


if __name__ == "__main__":
    main()
