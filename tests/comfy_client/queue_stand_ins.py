"""What the queue tests share: their workflow (tiny checkpoint, 64x64, one step) and a local
stand-in, a reverse proxy in front of a real ComfyUI (HTTPS, a bearer token, a websocket that
goes silent)."""
from __future__ import annotations

import asyncio
import ssl
import threading
from pathlib import Path

WORKFLOW = Path(__file__).parent / "tiny_txt2img.json"


class ComfyProxy:
    """A reverse proxy on 127.0.0.1 before a real ComfyUI, as users put one before a server: TLS
    with a test certificate, a required ``Authorization: Bearer`` token, and a websocket that
    accepts and then never says (or answers) anything, as a stalled socket does. Every request's
    headers are recorded."""

    def __init__(self, upstream: str, cert=None, key=None, token: str | None = None):
        self.upstream, self.cert, self.key, self.token = upstream, cert, key, token
        self.requests: list[tuple[str, dict]] = []
        self.stalled_sockets = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> "ComfyProxy":
        self._thread.start()
        self._ready.wait(30)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._startup())
        self._ready.set()
        self._loop.run_forever()

    async def _startup(self) -> None:
        import aiohttp
        from aiohttp import web

        self._session = aiohttp.ClientSession()
        self._sockets: set = set()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        context = None
        if self.cert:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(self.cert), str(self.key))
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self.cert else 'http'}://127.0.0.1:{port}"

    async def _shutdown(self) -> None:
        for handler in list(self._sockets):
            handler.cancel()
        await self._session.close()
        await self._runner.cleanup()

    async def _handle(self, request):
        from aiohttp import web

        self.requests.append((request.path, dict(request.headers)))
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.Response(status=401, text="token required")
        if request.path == "/ws":
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            self.stalled_sockets += 1
            handler = asyncio.current_task()
            self._sockets.add(handler)
            try:
                await asyncio.sleep(3600)   # never reads, so never answers a ping either
            except asyncio.CancelledError:
                pass
            finally:
                self._sockets.discard(handler)
            return ws
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "authorization")}
        async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                         data=await request.read(), allow_redirects=False) as answer:
            body = await answer.read()
            return web.Response(status=answer.status, body=body,
                                content_type=answer.content_type or "application/octet-stream")
