"""The ``launch`` command: run the server, manage API keys, inspect what you own, run benchmarks."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Launch: self-hosted model serving.")
api_keys_app = typer.Typer(no_args_is_help=True, help="API keys (works on the data directory directly).")
bundles_app = typer.Typer(no_args_is_help=True, help="Your model bundles.")
endpoints_app = typer.Typer(no_args_is_help=True, help="Your model endpoints.")
tasks_app = typer.Typer(no_args_is_help=True, help="Your async tasks.")
batch_jobs_app = typer.Typer(no_args_is_help=True, help="Your batch jobs.")
app.add_typer(api_keys_app, name="api-keys")
app.add_typer(bundles_app, name="bundles")
app.add_typer(endpoints_app, name="endpoints")
app.add_typer(tasks_app, name="tasks")
app.add_typer(batch_jobs_app, name="batch-jobs")
console = Console()

ApiKeyOption = typer.Option(None, "--api-key", envvar="LAUNCH_API_KEY", help="API key (or LAUNCH_API_KEY).")
EndpointOption = typer.Option(None, "--endpoint", envvar="LAUNCH_ENDPOINT",
                              help="Server URL (or LAUNCH_ENDPOINT), default http://127.0.0.1:8000.")
JsonOption = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _version(value: bool) -> None:
    if value:
        from launch import __version__

        print(__version__)
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True)) -> None:
    """Launch: self-hosted model serving."""


SERVER_EXTRA_HINT = "pip install 'launch[server]'"


def _require_server() -> None:
    """Exit with the install command when the server's packages are missing (a client-only install)."""
    try:
        import fastapi  # noqa: F401
        import sqlalchemy  # noqa: F401
        import uvicorn  # noqa: F401
    except ModuleNotFoundError as exc:
        print(f"the Launch server is not installed here ({exc.name} is missing): {SERVER_EXTRA_HINT}",
              file=sys.stderr)
        raise typer.Exit(2) from None


@app.command()
def server(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    data_dir: Path = typer.Option(Path("launch-data"), help="Where the database, objects and logs live."),
    public_url: str = typer.Option(None, help="Base URL clients use to reach this server (for signed URLs)."),
    allow_private_fetch: bool = typer.Option(
        False, help="Let the gateway fetch `url` inputs, and send callbacks, to loopback and private addresses "
                    "(tests, trusted LANs)."),
    sandbox: str = typer.Option(
        None, help="Worker sandbox: auto (where the host can; default), required (refuse to start without), off."),
    cancel_stops_worker: bool = typer.Option(
        False, help="Cancelling a running task recycles its worker process (otherwise its result is dropped)."),
    log_level: str = typer.Option("info", help="Log level."),
    log_format: str = typer.Option("text", help="Server and access log lines as 'text' or 'json'."),
    access_log: str = typer.Option(
        "data", help="Access log: 'data' (<data-dir>/logs/access.log), '-' (stderr), 'off', or a file path."),
) -> None:
    """Start the platform: gateway, control loop, database, object store, broker and workers."""
    _require_server()
    from launch.server import logs
    from launch.server.app import DataDirInUse, serve
    from launch.server.settings import Settings
    from launch.stores.placement.local import SandboxUnavailable

    if log_format not in ("text", "json"):
        console.print("[red]--log-format must be 'text' or 'json'[/red]")
        raise typer.Exit(2)
    overrides: dict[str, Any] = {"host": host, "port": port, "data_dir": data_dir, "log_format": log_format,
                                 "access_log": access_log}
    if public_url:
        overrides["public_url"] = public_url
    if allow_private_fetch:
        overrides["fetch_allow_private"] = True
    if sandbox:
        if sandbox not in ("auto", "required", "off"):
            console.print(f"[red]--sandbox must be auto, required or off, not {sandbox!r}[/red]")
            raise typer.Exit(2)
        overrides["sandbox"] = sandbox
    if cancel_stops_worker:
        overrides["task_cancel_stops_worker"] = True
    settings = Settings(**overrides)
    logs.configure(log_level, log_format)
    try:
        serve(settings, log_level)
    except (DataDirInUse, SandboxUnavailable) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


@api_keys_app.command("create")
def api_keys_create(
    user: str = typer.Option(..., help="The owner the key authenticates as."),
    data_dir: Path = typer.Option(Path("launch-data"), help="The server's data directory."),
    admin: bool = typer.Option(False, "--admin", help="Operator key: the dashboard shows every owner's resources."),
) -> None:
    """Create an API key for USER; the key is the last line printed (shown once, stored hashed)."""
    from launch.server.domain.owners import insert_key_statement, key_digest, new_api_key, shown_prefix

    secret = _key_store_secret(data_dir)  # creates the data directory on first use
    key = new_api_key()
    with _key_store(data_dir) as conn:
        conn.execute(insert_key_statement(user, key_digest(secret, key), shown_prefix(key), admin=admin))
    kind = "an admin API key" if admin else "an API key"
    print(f"Created {kind} for {user} (store it now; it is not shown again):", file=sys.stderr)
    print(key)


@api_keys_app.command("list")
def api_keys_list(
    data_dir: Path = typer.Option(Path("launch-data"), help="The server's data directory."),
    user: str = typer.Option(None, help="Only the keys of this owner."),
    as_json: bool = JsonOption,
) -> None:
    """List API keys: id, prefix, owner, when created, last used and revoked (never the keys themselves)."""
    from launch.server.domain.owners import list_keys

    with _key_store(data_dir) as conn:
        records = list_keys(conn, user)
    if as_json:
        print(json.dumps([{"id": r.id, "prefix": r.prefix, "owner": r.owner, "created_at": r.created_at,
                           "last_used_at": r.last_used_at, "revoked_at": r.revoked_at} for r in records], indent=2))
        return
    shown = [{"id": r.id[:12], "prefix": r.prefix, "owner": r.owner, "created": _when(r.created_at),
              "last used": _when(r.last_used_at), "revoked": _when(r.revoked_at)} for r in records]
    _show(shown, ["id", "prefix", "owner", "created", "last used", "revoked"], False, "API keys (times in UTC)")


@api_keys_app.command("revoke")
def api_keys_revoke(
    key: str = typer.Argument(..., help="The key itself, the prefix `list` shows, or the start of its id."),
    data_dir: Path = typer.Option(Path("launch-data"), help="The server's data directory."),
) -> None:
    """Revoke an API key; a running server refuses it within a second, without a restart."""
    from launch.server.domain.errors import LaunchError
    from launch.server.domain.owners import revoke_key

    secret = _key_store_secret(data_dir)
    try:
        with _key_store(data_dir) as conn:
            record = revoke_key(conn, secret, key)
    except LaunchError as exc:
        console.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from None
    console.print(f"revoked key {record.id} ({record.prefix or 'no prefix'}) of {record.owner} "
                  f"at {_when(record.revoked_at)} UTC")


def _key_store_secret(data_dir: Path) -> bytes:
    _require_server()
    from launch.server.settings import Settings

    return Settings(data_dir=data_dir).secret_key()


@contextlib.contextmanager
def _key_store(data_dir: Path) -> Iterator[Any]:
    """A transaction on the data directory's database, migrated to the newest schema first."""
    _require_server()
    from launch.server.settings import Settings
    from launch.stores.database import create_sync_engine, migrate

    url = Settings(data_dir=data_dir).resolved_database_url
    migrate(url)
    engine = create_sync_engine(url)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def _when(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _client(api_key: str | None, endpoint: str | None) -> Any:
    from launch import LaunchClient

    try:
        return LaunchClient(api_key=api_key, endpoint=endpoint)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def _plain(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    if hasattr(obj, "model_endpoint"):
        return asdict(obj.model_endpoint)
    return obj


def _show(rows: list[dict[str, Any]], columns: list[str], as_json: bool, title: str) -> None:
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _run(action: Any) -> Any:
    from launch.errors import APIError, LaunchClientError

    try:
        return action()
    except APIError as exc:
        console.print(f"error {exc.status_code}: {exc.detail}", style="red", markup=False)
        raise typer.Exit(1) from None
    except (LaunchClientError, TimeoutError) as exc:
        console.print(str(exc), style="red", markup=False)
        raise typer.Exit(1) from None


@bundles_app.command("list")
def bundles_list(api_key: str = ApiKeyOption, endpoint: str = EndpointOption, as_json: bool = JsonOption) -> None:
    """List your bundles."""
    client = _client(api_key, endpoint)
    rows = [_plain(b) for b in _run(client.list_model_bundles)]
    _show(rows, ["name", "packaging_type", "requirements", "bundle_id"], as_json, "Model bundles")


@bundles_app.command("get")
def bundles_get(name: str, api_key: str = ApiKeyOption, endpoint: str = EndpointOption,
                as_json: bool = JsonOption) -> None:
    """Show one bundle."""
    client = _client(api_key, endpoint)
    row = _plain(_run(lambda: client.get_model_bundle(name)))
    _show([row], ["name", "packaging_type", "location", "requirements", "env_params", "app_config"], as_json,
          f"Bundle {name}")


@bundles_app.command("delete")
def bundles_delete(name: str, api_key: str = ApiKeyOption, endpoint: str = EndpointOption) -> None:
    """Delete a bundle (no endpoint may use it)."""
    client = _client(api_key, endpoint)
    _run(lambda: client.delete_model_bundle(name))
    console.print(f"deleted bundle {name}")


def _endpoint_row(e: Any) -> dict[str, Any]:
    row = _plain(e)
    workers = row.get("worker_settings") or {}
    available, low, high = (workers.get(k) for k in ("available_workers", "min_workers", "max_workers"))
    row["workers"] = f"{available or 0} ({low}-{high})"
    return row


@endpoints_app.command("list")
def endpoints_list(api_key: str = ApiKeyOption, endpoint: str = EndpointOption,
                   as_json: bool = JsonOption) -> None:
    """List your endpoints."""
    client = _client(api_key, endpoint)
    rows = [_endpoint_row(e) for e in _run(client.list_model_endpoints)]
    _show(rows, ["name", "endpoint_type", "bundle_name", "status", "workers"], as_json, "Model endpoints")


@endpoints_app.command("get")
def endpoints_get(name: str, api_key: str = ApiKeyOption, endpoint: str = EndpointOption,
                  as_json: bool = JsonOption) -> None:
    """Show one endpoint."""
    client = _client(api_key, endpoint)
    record = _run(lambda: client.connection.request("GET", f"/v1/model-endpoints/{name}"))
    _show([record], ["name", "endpoint_type", "bundle_name", "status", "status_reason", "failed_rollout",
                     "resource_settings", "worker_settings"], as_json, f"Endpoint {name}")


@endpoints_app.command("delete")
def endpoints_delete(name: str, api_key: str = ApiKeyOption, endpoint: str = EndpointOption) -> None:
    """Delete an endpoint (its workers drain and stop)."""
    client = _client(api_key, endpoint)
    _run(lambda: client.delete_model_endpoint(name))
    console.print(f"deleting endpoint {name}")


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")


def _seconds(text: str) -> float:
    """``90``, ``30s``, ``5m``, ``2h`` or ``1d`` as seconds."""
    match = _DURATION.match(text.strip())
    if match is None:
        console.print(f"[red]not a duration: {text!r} (use e.g. 30s, 5m, 2h, 1d)[/red]")
        raise typer.Exit(2)
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


@endpoints_app.command("logs")
def endpoints_logs(
    name: str, api_key: str = ApiKeyOption, endpoint: str = EndpointOption,
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines until Ctrl-C."),
    since: str = typer.Option(None, "--since", help="Only lines of the last 30s, 5m, 2h, 1d, ..."),
) -> None:
    """Print an endpoint's logs: environment builds, cold starts and its workers' timestamped output."""
    client = _client(api_key, endpoint)
    path = f"/v1/model-endpoints/{name}/logs"
    params = {"since_seconds": _seconds(since)} if since else None
    answer = _run(lambda: client.connection.request("GET", path, params=params))
    sys.stdout.write(answer["content"] if answer["content"].endswith("\n") or not answer["content"]
                     else answer["content"] + "\n")
    sys.stdout.flush()
    cursor = answer.get("cursor")
    try:
        while follow:
            time.sleep(1.0)
            answer = _run(lambda c=cursor: client.connection.request("GET", path, params={"cursor": c}))
            cursor = answer.get("cursor", cursor)
            if answer["content"]:
                sys.stdout.write(answer["content"])
                sys.stdout.flush()
    except KeyboardInterrupt:
        pass


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


@app.command()
def status(api_key: str = ApiKeyOption, endpoint: str = EndpointOption, as_json: bool = JsonOption) -> None:
    """One screen: your endpoints (status, workers, load, latency), batch jobs and recent failures (everyone's
    with an admin key). The same data, live, at /dashboard."""
    client = _client(api_key, endpoint)
    data = _run(lambda: client.connection.request("GET", "/v1/status"))
    if as_json:
        print(json.dumps(data, indent=2))
        return
    scope = "every owner (admin key)" if data["admin"] else data["owner"]
    table = Table(title=f"Endpoints of {scope}")
    for column in ("endpoint", "type", "status", "workers", "in flight", "queued", "requests", "failed", "p50",
                   "p99"):
        table.add_column(column, justify="right" if column in ("in flight", "queued", "requests", "failed", "p50",
                                                                "p99") else "left")
    for e in data["endpoints"]:
        requests = e["requests"]
        failed = sum(requests.get(k, 0) for k in ("failure", "task_failure", "server_error", "timeout"))
        workers = e["workers"]
        name = f"{e['owner']}/{e['name']}" if data["admin"] else e["name"]
        color = {"READY": "green", "UPDATE_FAILED": "red"}.get(e["status"], "yellow")
        table.add_row(name, e["type"], f"[{color}]{e['status']}[/{color}]",
                      f"{workers['serving']}/{e['desired_workers'] if e['desired_workers'] is not None else '-'}",
                      str(e["in_flight"]), str(e["queued"]), str(sum(requests.values())), str(failed),
                      _ms(e["latency"]["p50"]), _ms(e["latency"]["p99"]))
    console.print(table)
    jobs = [j for j in data["batch_jobs"] if j["status"] in ("PENDING", "RUNNING")] or data["batch_jobs"][:5]
    if jobs:
        jobs_table = Table(title="Batch jobs")
        for column in ("job", "bundle", "status", "progress", "failed"):
            jobs_table.add_column(column)
        for j in jobs:
            jobs_table.add_row(j["id"][:12], j["bundle"], j["status"], f"{j['done'] + j['failed']}/{j['total']}",
                               str(j["failed"]))
        console.print(jobs_table)
    for failure in data["failures"][:5]:
        last = (failure["traceback"] or "").strip().splitlines()[-1:] or ["(no traceback)"]
        when = time.strftime("%H:%M:%S", time.localtime(failure["at"]))
        console.print(f"[red]failure[/red] {when} {failure['kind']} {failure['request_id'] or ''}: {last[0]}")
    console.print(f"[dim]live: {client.connection.base_url}/dashboard[/dim]")


@endpoints_app.command("stream")
def endpoints_stream(name: str, args: str = typer.Option(None, "--args", help="Keyword arguments as a JSON object."),
                     url: str = typer.Option(None, "--url", help="A URL whose bytes are the input."),
                     api_key: str = ApiKeyOption, endpoint: str = EndpointOption) -> None:
    """Run one prediction on a streaming endpoint and print each item (one JSON line) as it arrives."""
    from launch.errors import StreamError

    if (args is None) == (url is None):
        console.print("[red]give exactly one of --args and --url[/red]")
        raise typer.Exit(2)
    try:
        parsed = json.loads(args) if args is not None else None
    except json.JSONDecodeError as exc:
        console.print(f"[red]--args is not valid JSON: {exc}[/red]")
        raise typer.Exit(2) from None
    client = _client(api_key, endpoint)

    def relay() -> None:
        try:
            for item in client._stream_request(name, url=url, args=parsed):
                print(json.dumps(item), flush=True)
        except StreamError as exc:  # on stderr: stdout carries only items
            print(str(exc), file=sys.stderr)
            raise typer.Exit(1) from None

    _run(relay)


@endpoints_app.command("wait")
def endpoints_wait(name: str, timeout: float = typer.Option(300.0, help="Give up after this many seconds."),
                   api_key: str = ApiKeyOption, endpoint: str = EndpointOption) -> None:
    """Wait until an endpoint is READY (exit 0), printing its status as it changes; exit 1 with the reason if
    it fails to start or is not READY within TIMEOUT."""
    client = _client(api_key, endpoint)
    found = _run(lambda: client.get_model_endpoint(name))
    if found is None:
        console.print(f"no endpoint named {name!r}", style="red", markup=False)
        raise typer.Exit(1)
    _run(lambda: found.wait_until_ready(timeout=timeout, progress=True))


@batch_jobs_app.command("get")
def batch_jobs_get(job_id: str, watch: bool = typer.Option(False, "--watch", help="Show progress until it ends."),
                   api_key: str = ApiKeyOption, endpoint: str = EndpointOption, as_json: bool = JsonOption) -> None:
    """Show a batch job (with --watch: a progress bar until it ends)."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    client = _client(api_key, endpoint)
    job = _run(lambda: client.get_batch_async_response(job_id))
    if watch and job["status"] not in ("SUCCESS", "FAILURE"):
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=Console(stderr=True)) as progress:
            bar = progress.add_task(f"job {job_id[:8]} {job['status']}", total=job.get("total") or None)
            while True:
                progress.update(bar, completed=(job.get("done") or 0) + (job.get("failed") or 0),
                                total=job.get("total") or None, description=f"job {job_id[:8]} {job['status']}")
                if job["status"] in ("SUCCESS", "FAILURE"):
                    break
                time.sleep(0.2)
                job = _run(lambda: client.get_batch_async_response(job_id))
    _show([{"job_id": job_id, **job}], ["job_id", "status", "total", "done", "failed", "duration", "result",
                                        "error"], as_json, "Batch job")
    if watch and job["status"] == "FAILURE":
        raise typer.Exit(1)


@tasks_app.command("get")
def tasks_get(task_id: str, api_key: str = ApiKeyOption, endpoint: str = EndpointOption,
              as_json: bool = JsonOption) -> None:
    """Show an async task's status and result."""
    client = _client(api_key, endpoint)
    record = _run(lambda: client.connection.request("GET", f"/v1/async-tasks/{task_id}"))
    _show([record], ["task_id", "status", "attempt", "queue_position", "result", "result_url", "reason"],
          as_json, "Task")


@tasks_app.command("list")
def tasks_list(
    model_endpoint: str = typer.Argument(..., metavar="ENDPOINT_NAME", help="The async endpoint (name or id)."),
    state: list[str] = typer.Option([], "--state", "-s", help="Only these states (repeatable): PENDING, "
                                    "STARTED, SUCCESS, FAILURE, CANCELLED, EXPIRED."),
    since: float = typer.Option(None, help="Only tasks submitted since this many seconds ago."),
    limit: int = typer.Option(100, help="At most this many tasks (newest first, up to 1000)."),
    api_key: str = ApiKeyOption, endpoint: str = EndpointOption, as_json: bool = JsonOption,
) -> None:
    """List an endpoint's async tasks, newest first."""
    import time

    client = _client(api_key, endpoint)
    rows = _run(lambda: client.list_tasks(model_endpoint, states=state or None,
                                          since=time.time() - since if since is not None else None, limit=limit))
    _show(rows, ["task_id", "status", "attempt", "priority", "created_at", "finished_at", "callback_state",
                 "reason"], as_json, f"Tasks of {model_endpoint}")


@tasks_app.command("cancel")
def tasks_cancel(task_id: str, api_key: str = ApiKeyOption, endpoint: str = EndpointOption,
                 as_json: bool = JsonOption) -> None:
    """Cancel an async task (a pending one never runs; a running one's result is dropped)."""
    client = _client(api_key, endpoint)
    record = _run(lambda: client.cancel_task(task_id))
    _show([record], ["task_id", "status", "cancelled", "reason"], as_json, "Task")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(ctx: typer.Context) -> None:
    """Run the benchmarks (bench/run in a source checkout; arguments are passed through)."""
    script = Path(__file__).resolve().parents[2] / "bench" / "run"
    if not script.exists():
        console.print("[red]bench/run not found: benchmarks run from a source checkout of Launch[/red]")
        raise typer.Exit(2)
    raise typer.Exit(subprocess.call([str(script), *ctx.args], env=os.environ.copy()))


def main() -> None:
    app()
