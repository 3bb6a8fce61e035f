"""A tiny KServe V1 protocol server for the integration tests (not a mock of MLServer).

Serves a scikit-learn model saved with joblib:
``GET /v1/models/<name>`` -> ``{"name", "ready"}``;
``POST /v1/models/<name>:predict`` with ``{"instances": [[...], ...]}`` ->
``{"predictions": [...]}``. Usage: ``python kserve_v1_server.py MODEL NAME HOST PORT``.
"""

from __future__ import annotations

import json
import sys

import joblib
import numpy as np
from aiohttp import web


def make_app(model_path: str, name: str) -> web.Application:
    model = joblib.load(model_path)

    async def ready(request: web.Request) -> web.Response:
        if request.match_info["name"] != name:
            return web.json_response({"error": "model not found"}, status=404)
        return web.json_response({"name": name, "ready": True})

    async def predict(request: web.Request) -> web.Response:
        if request.match_info["name"] != name:
            return web.json_response({"error": "model not found"}, status=404)
        try:
            doc = json.loads(await request.read())
            x = np.asarray(doc["instances"], dtype=np.float64)
            if x.ndim != 2:
                raise ValueError("instances must be rows of numbers")
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": f"bad request: {exc}"}, status=400)
        return web.json_response({"predictions": model.predict(x).tolist()})

    app = web.Application()
    app.router.add_get("/v1/models/{name}", ready)
    app.router.add_post("/v1/models/{name}:predict", predict)
    return app


if __name__ == "__main__":
    path, model_name, host, port = sys.argv[1:5]
    web.run_app(make_app(path, model_name), host=host, port=int(port), access_log=None, print=None)
