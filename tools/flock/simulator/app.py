"""The FLock simulator's HTTP API: FedLedger endpoints under ``/api/v1``, presigned storage, admin routes.

Routes (FLOCK_API.md section 3): ``GET /tasks/get``, ``POST /tasks/submit-result``,
``POST /tasks/request-validation-assignment/{task_id}``, ``POST /tasks/update-validation-assignment/{id}``,
``GET /tasks/list``, ``GET /tasks/wallet-submissions``, ``GET /health`` and ``GET /stats/models``. Errors are
``{"detail": "..."}``. ``/storage/{task_id}/{kind}.jsonl`` serves files behind HMAC-signed, expiring links and
answers 403 with an S3-style XML body. ``/admin/*`` (header ``x-admin-token``) manages faults and API keys.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from tools.flock.simulator.faults import FaultMiddleware, FaultPlan, FaultRule
from tools.flock.simulator.store import Refusal, Role, SimulatorStore

API_PREFIX = "/api/v1"
ApiKey = Annotated[str | None, Header(alias="flock-api-key")]
AdminToken = Annotated[str | None, Header(alias="x-admin-token")]


class SubmitData(BaseModel):
    model_config = ConfigDict(extra="allow")

    hg_repo_id: str = Field(min_length=1)
    base_model: str | None = None
    gpu_type: str | None = None
    revision: str | None = None


class SubmitBody(BaseModel):
    # Lax int: FLock's reference node sends task_id as a JSON string ("29"); newer clients send 29.
    task_id: int
    data: SubmitData


class UpdateBody(BaseModel):
    status: Literal["completed", "failed"]
    data: dict[str, Any] | None = None


class NewKey(BaseModel):
    role: Role
    task_ids: list[int] | None = None
    label: str | None = None


def create_app(store: SimulatorStore, faults: FaultPlan | None = None, admin_token: str | None = None) -> FastAPI:
    """The simulator app over ``store``. Without ``admin_token`` the admin routes are disabled."""
    app = FastAPI(title="FLock FedLedger simulator", docs_url="/docs", openapi_url="/openapi.json")
    plan = faults or FaultPlan()
    app.state.faults = plan

    @app.exception_handler(Refusal)
    async def _refusal(request: Request, exc: Refusal) -> Response:
        if request.url.path.startswith("/storage/"):
            code, _, message = exc.detail.partition(": ")
            body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                    f"<Message>{message}</Message></Error>")
            return Response(body, status_code=exc.status, media_type="application/xml", headers=exc.headers)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    def link_base(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    # ----- FedLedger API -------------------------------------------------------------------------------------
    @app.get(API_PREFIX + "/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(API_PREFIX + "/tasks/get")
    def get_task(request: Request, task_id: int) -> dict[str, Any]:
        return store.task_object(task_id, link_base=link_base(request))

    @app.get(API_PREFIX + "/tasks/list")
    def list_tasks(status: str | None = None) -> list[dict[str, Any]]:
        return store.list_tasks(status)

    @app.post(API_PREFIX + "/tasks/submit-result")
    def submit_result(body: SubmitBody, api_key: ApiKey = None) -> dict[str, Any]:
        return store.submit(api_key, body.task_id, body.data.model_dump(exclude_none=True))

    @app.get(API_PREFIX + "/tasks/wallet-submissions")
    def wallet_submissions(task_id: int, page: Annotated[int, Query(ge=1)] = 1,
                           size: Annotated[int, Query(ge=1, le=100)] = 50,
                           api_key: ApiKey = None) -> dict[str, Any]:
        return store.wallet_submissions(api_key, task_id, page, size)

    @app.post(API_PREFIX + "/tasks/request-validation-assignment/{task_id}")
    def request_assignment(request: Request, task_id: int, api_key: ApiKey = None) -> dict[str, Any]:
        return store.request_assignment(api_key, task_id, link_base(request))

    @app.post(API_PREFIX + "/tasks/update-validation-assignment/{assignment_id}")
    def update_assignment(assignment_id: int, body: UpdateBody, api_key: ApiKey = None) -> dict[str, Any]:
        return store.update_assignment(api_key, assignment_id, body.status, body.data)

    @app.get(API_PREFIX + "/stats/models")
    def stats_models(task_id: int, page: Annotated[int, Query(ge=1)] = 1,
                     size: Annotated[int, Query(ge=1, le=100)] = 50) -> dict[str, Any]:
        store.folder(task_id)
        return store.leaderboard(task_id, page, size)

    # ----- presigned storage ---------------------------------------------------------------------------------
    @app.get("/storage/{task_id}/{kind}.jsonl")
    def storage(task_id: int, kind: str,
                expires: Annotated[str | None, Query(alias="X-Flock-Expires")] = None,
                signature: Annotated[str | None, Query(alias="X-Flock-Signature")] = None) -> FileResponse:
        path = store.open_link(task_id, kind, expires, signature)
        return FileResponse(path, media_type="application/octet-stream")

    # ----- admin ---------------------------------------------------------------------------------------------
    def require_admin(token: str | None) -> None:
        if admin_token is None:
            raise Refusal(404, "Not Found")
        if not token or not hmac.compare_digest(token, admin_token):
            raise Refusal(401, "Invalid admin token")

    @app.get("/admin/faults")
    def list_faults(token: AdminToken = None) -> list[dict[str, Any]]:
        require_admin(token)
        return [rule.model_dump() for rule in plan.pending()]

    @app.post("/admin/faults")
    def add_faults(rules: list[FaultRule], token: AdminToken = None) -> dict[str, int]:
        require_admin(token)
        plan.add(*rules)
        return {"pending": len(plan.pending())}

    @app.delete("/admin/faults")
    def clear_faults(token: AdminToken = None) -> dict[str, int]:
        require_admin(token)
        plan.clear()
        return {"pending": 0}

    @app.post("/admin/api-keys")
    def new_key(body: NewKey, token: AdminToken = None) -> dict[str, str]:
        require_admin(token)
        try:
            key, wallet = store.create_api_key(body.role, body.task_ids, label=body.label)
        except ValueError as exc:
            raise Refusal(400, str(exc)) from None
        return {"api_key": key, "wallet": wallet}

    @app.get("/admin/submissions")
    def all_submissions(task_id: int | None = None, token: AdminToken = None) -> list[dict[str, Any]]:
        require_admin(token)
        return store.submissions(task_id)

    app.add_middleware(FaultMiddleware, plan=plan)
    return app
