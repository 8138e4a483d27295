"""``griddispatch intake``: the one HTTP entry (aiohttp), thin glue around pure adapters.

Every submission takes the same path: size limit (413) → API key for the channel (403) →
adapter or contract validation (400 naming the field) → rate limit per key (429 with
Retry-After, shared in Redis) → ``IntakePublisher.submit`` in a thread pool, waiting for the
broker's acknowledgement (503 with Retry-After when the broker does not ack: nothing was
accepted, a retry is safe). Every refusal is a 4xx/5xx body with the reason, in the format
the surface speaks (Open311: ``[{code, description}]`` as XML or JSON; the JSON API:
``{"errors": [{code, description, field, index}]}``), and is counted in
``griddispatch_intake_requests{channel, result}``.

The blocking pieces (confluent-kafka delivery waits, the broker metadata check) run in a
thread pool so the event loop keeps serving reads while a broker is slow.
"""

from __future__ import annotations

import asyncio

import redis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from connectors.intake import api_routes, open311_routes, render
from connectors.intake.service import INTAKE, MAX_BATCH_BYTES, Intake, intake_of, refusals
from engine.runtime import metrics


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    intake = intake_of(request)
    loop = asyncio.get_running_loop()
    checks: dict[str, str] = {}
    broker = await loop.run_in_executor(intake.executor, intake.broker_problem)
    checks["kafka"] = broker or "ok"
    try:
        await intake.redis.ping()
        checks["redis"] = "ok"
    except redis.RedisError as exc:
        checks["redis"] = f"Redis at {intake.settings.redis_url} did not answer: {exc}"
    ready = all(v == "ok" for v in checks.values())
    return web.json_response({"ready": ready, **checks}, status=200 if ready else 503,
                             dumps=lambda d: render.json_document(d).decode())


async def metrics_page(_request: web.Request) -> web.Response:
    return web.Response(body=metrics.exposition("intake"),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(intake: Intake) -> web.Application:
    app = web.Application(client_max_size=MAX_BATCH_BYTES + 1, middlewares=[refusals])
    app[INTAKE] = intake
    open311_routes.register(app.router)
    api_routes.register(app.router)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)

    async def on_cleanup(_app: web.Application) -> None:
        if intake.redis_async is not None:
            await intake.redis_async.aclose()  # type: ignore[attr-defined]  # redis>=5; old stubs

    app.on_cleanup.append(on_cleanup)
    return app


async def start(intake: Intake, host: str, port: int) -> web.AppRunner:
    """Serve ``intake`` on host:port (and start its read model feed); stop with cleanup()."""
    runner = web.AppRunner(create_app(intake), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    if intake.feed is not None:
        intake.feed.start()
    return runner
