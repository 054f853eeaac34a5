"""`aiflow serve-model <domain>`: the champion behind HTTP (FastAPI on uvicorn), loopback by default.

POST /predict  a JSON body of the domain's request model (GET /docs shows it), or for images a multipart
               upload (`image` file parts) -> the batch scorer's rows for each item; 413 over the body limit, 422 naming the field and the failed check
               (types and limits here, the scoring gate's row-level checks in domains/common/serving.py)
GET  /health   up, which model version serves, reloads, the last reload error
GET  /metadata model version, DVC hash, metrics, threshold, runtime, batching and limits, request schema

Requests waiting together are scored in one call (whatever queued while the previous batch ran, and up
to a short window for as many as the previous batch answered: closed-loop clients come back together)
on one scoring thread, so the event loop only parses and answers. The
registry is watched by a thread of its own: a new champion loads aside and replaces the old between
batches (domains/common/serving.ModelHolder).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, get_args

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline  # Swagger UI and ReDoc served from the package: /docs works offline
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile  # what Request.form() gives (FastAPI's UploadFile subclasses it)

from domains.common.serving import ModelHolder, Outcome, ServedModel, error

log = logging.getLogger("aiflow.serve")
MAX_FILES = 257  # multipart parts read at most: one more than an image request's item limit, so that limit names it


@dataclass(frozen=True)
class ServeConfig:
    domain: str
    runtime: str = "torch"
    host: str = "127.0.0.1"  # loopback: exposing a model is a decision, not a default
    port: int = 8000
    batching: bool = True
    window_ms: float = 10.0  # the most a batch waits for the requests it expects (a lone client never waits)
    max_batch: int = 64  # requests per scoring call
    max_body_bytes: int = 8 * 1024 * 1024
    poll_seconds: float = 0.5  # how often registry/<domain>.json is checked for a new champion
    threads: int = 1  # torch threads of the scoring thread (small models: one is fastest under load)
    history: Path | None = None  # fraud: earlier labelled transactions, the windows' past for every request


class Batcher:
    """Requests queue here; one worker scores what has gathered, with the model current at that moment."""

    def __init__(self, holder: ModelHolder, config: ServeConfig):
        self.holder, self.config = holder, config
        self.queue: asyncio.Queue[tuple[Any, asyncio.Future]] = asyncio.Queue()
        # torch's thread count is set per thread (OpenMP): the scoring thread sets its own, or every small
        # matrix product waits on a second OpenMP thread (~13 ms per batch instead of 0.2 for fraud's MLP)
        self.executor = ThreadPoolExecutor(1, "score", _torch_threads, (config.threads,))
        self.task: asyncio.Task | None = None
        self.batches = 0
        self.requests = 0

    async def submit(self, body: Any) -> tuple[ServedModel, Outcome]:
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self.queue.put((body, future))
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        limit = self.config.max_batch if self.config.batching else 1
        expected = 1  # requests likely to come now: the clients just answered and those that queued meanwhile
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.config.window_ms / 1000
            while len(batch) < limit:
                try:
                    batch.append(self.queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                left = deadline - loop.time()
                # Waiting for the answered clients' next requests keeps them in one batch: without it, clients
                # split into groups that alternate, each batch paying the fixed cost of a call for half of them.
                if not self.config.batching or len(batch) >= expected or left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), left))
                except TimeoutError:
                    break
            model = self.holder.acquire()
            try:
                outcomes = await loop.run_in_executor(self.executor, model.score, [body for body, _ in batch])
            except Exception as err:  # a bug, not bad input: those requests get a 500, the server goes on
                log.error("scoring failed:\n%s", traceback.format_exc())
                outcomes = [
                    Outcome(
                        errors=[{"loc": [], "msg": f"internal error: {type(err).__name__}: {err}", "type": "internal"}],
                        internal=True,
                    )
                    for _ in batch
                ]
            finally:
                self.holder.release(model)
            self.batches += 1
            self.requests += len(batch)
            expected = len(batch) + self.queue.qsize()
            good = [body for (body, _), outcome in zip(batch, outcomes) if outcome.rows is not None]
            if good:
                self.holder.warm = good[0]  # what the next champion scores once before it serves
            for (_, future), outcome in zip(batch, outcomes):
                if not future.done():
                    future.set_result((model, outcome))
            await asyncio.sleep(0)  # the answers go out before the next batch is gathered (and waits for their clients)


def _torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _watch(holder: ModelHolder, stop: threading.Event, threads: int) -> None:
    """The registry watcher: a new champion is loaded here, never on the scoring thread."""
    _torch_threads(threads)  # its warm-up scores on this thread
    while not stop.wait(holder.poll_seconds):
        try:
            if holder.check():
                log.warning("now serving %s %s (%s)", holder.domain, holder.current.ref.version, holder.current.ref.md5)
        except Exception:  # keep watching; /health shows reload_error
            log.error("registry check failed:\n%s", traceback.format_exc())


def create_app(root: Path, config: ServeConfig) -> FastAPI:
    """The app, with the champion loaded and verified (raises PipelineError in one line when it cannot be)."""
    _torch_threads(config.threads)  # this thread loads and warms up the champion
    context: dict[str, Any] = {}
    if config.history is not None:
        if config.domain != "fraud":
            from domains.common.errors import PipelineError

            raise PipelineError("--history: only fraud's window features have a past to look back on")
        from domains.fraud.serve import load_history

        context = load_history(config.history)
    holder = ModelHolder(root, config.domain, config.runtime, context, config.poll_seconds)
    request_model: type[BaseModel] = holder.current.serving.request(holder.current.params)
    batcher = Batcher(holder, config)
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(holder, stop, config.threads), name="registry-watch", daemon=True)

    async def lifespan(app: FastAPI):
        batcher.task = asyncio.create_task(batcher.run())
        watcher.start()
        yield
        stop.set()
        batcher.task.cancel()
        batcher.executor.shutdown(wait=True)
        holder.close()

    app = FastAPIOffline(
        title=f"aiflow {config.domain} model",
        lifespan=lifespan,
        description=f"The {config.domain} champion, scored as `aiflow score` scores a batch: the same reader, "
        "row-level gate checks and score function. Bad requests get 4xx with the reason.",
    )

    @app.post(
        "/predict",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{request_model.__name__}"}}},
            }
        },
    )
    async def predict(request: Request) -> JSONResponse:
        raw, refusal = await _read_body(request, config.max_body_bytes)
        if refusal is None and request.headers.get("content-type", "").startswith("multipart/form-data"):
            raw, refusal = await _multipart_as_json(request, raw, request_model)
        if refusal is not None:
            return refusal
        try:
            body = request_model.model_validate_json(raw)
        except ValidationError as err:
            return _unprocessable(
                [
                    error(list(e["loc"]), e["msg"], e["type"])
                    for e in err.errors(include_url=False, include_input=False, include_context=False)
                ]
            )
        model, outcome = await batcher.submit(body)
        if outcome.internal:
            return JSONResponse({"detail": outcome.errors}, status_code=500)
        if outcome.errors:
            return _unprocessable(outcome.errors)
        return JSONResponse({"model": _model(model), "predictions": outcome.rows})

    @app.get("/health")
    async def health() -> dict[str, Any]:
        current = holder.current
        return {
            "status": "ok",
            "domain": config.domain,
            "version": current.ref.version,
            "dvc_md5": current.ref.md5,
            "runtime": current.runtime,
            "reloads": holder.reloads,
            "reload_error": holder.reload_error,
            "queued": batcher.queue.qsize(),
            "batches": batcher.batches,
            "requests": batcher.requests,
        }

    @app.get("/metadata")
    async def metadata() -> dict[str, Any]:
        return {
            **holder.current.metadata(),
            "serving": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
            "request_schema": request_model.model_json_schema(),
        }

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version="1", description=app.description, routes=app.routes)
            body = request_model.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(body.pop("$defs", {}))
            components[request_model.__name__] = body
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.holder, app.state.batcher = holder, batcher
    return app


async def _read_body(request: Request, limit: int) -> tuple[bytes, JSONResponse | None]:
    """The body, refused early when over the limit (413) or empty (422)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return b"", _too_large(int(declared), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return b"", _too_large(size, limit)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return raw, _unprocessable([error([], "empty body: send a JSON object (see GET /docs)", "missing")])
    return raw, None


async def _multipart_as_json(request: Request, raw: bytes, request_model: type[BaseModel]) -> tuple[bytes, Any]:
    """An image domain's multipart upload (one `image` file part per item, its file name as the id) as the
    JSON body it stands for, so it passes exactly the same validation and checks; other domains take JSON."""
    item = request_model.model_fields["items"].annotation
    if "image" not in getattr(get_args(item)[0] if get_args(item) else item, "model_fields", {}):
        return raw, _unprocessable([error([], "multipart uploads are for image domains: send JSON", "content_type")])

    async def replay() -> dict[str, Any]:  # the body was read (and size-checked) already
        return {"type": "http.request", "body": raw, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=MAX_FILES, max_fields=MAX_FILES)
    except Exception as err:  # python-multipart's parse errors, HTTPException for too many parts
        return raw, _unprocessable([error([], f"malformed multipart body: {getattr(err, 'detail', err)}", "multipart")])
    extra = [key for key in form if key != "image"]
    files = [part for part in form.getlist("image") if isinstance(part, UploadFile)]
    if extra or not files:
        what = f"unexpected part(s) {', '.join(sorted(set(extra)))}" if extra else "no file part named 'image'"
        return raw, _unprocessable([error([], f"{what}: send each image as a file part named 'image'", "multipart")])
    items = [
        {"image": base64.b64encode(await part.read()).decode(), **({"id": part.filename} if part.filename else {})}
        for part in files
    ]
    return json.dumps({"items": items}).encode(), None


def _too_large(size: int, limit: int) -> JSONResponse:
    return JSONResponse(
        {
            "detail": [
                error(
                    [],
                    f"body of {size} bytes or more is over the limit of {limit} bytes "
                    "(--max-body-mb); send fewer items per request",
                    "too_large",
                )
            ]
        },
        status_code=413,
    )


def _unprocessable(errors: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"detail": errors}, status_code=422)


def _model(model: ServedModel) -> dict[str, Any]:
    return {"version": model.ref.version, "name": model.ref.model, "dvc_md5": model.ref.md5, "runtime": model.runtime}


def serve(root: Path, config: ServeConfig) -> None:
    """Run the endpoint until interrupted."""
    import uvicorn

    app = create_app(root, config)
    print(
        f"{config.domain}: serving {app.state.holder.current.ref.version} ({app.state.holder.current.ref.model}) "
        f"on http://{config.host}:{config.port} (docs: /docs)",
        flush=True,
    )
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", access_log=False)
