"""The app as Microsoft's Python worker runs it (azure-functions-runtime, driven by the
host stand-in in ``standins.host``): every function loads, a function the worker would
refuse fails the whole app as it does under ``func start`` and in Azure, and an answer
the worker cannot convert fails its invocation. The protocol messages the stand-in
hands the runtime refuse what protobuf refuses."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from standins import rpc
from standins.invoke import FUNCTIONS, retry_policy
from tests.support.indexing import CONTRACT_FUNCTIONS

ROOT = Path(__file__).resolve().parent.parent

# Run in a fresh interpreter (the runtime keeps its registry in module state): start
# a host on the app folder given and print what it loaded, or the refusal.
HOST_SCRIPT = r"""
import asyncio, json, sys
sys.path.insert(0, sys.argv[1])
from standins.host import Host, WorkerRefused, FunctionFailed
from standins import triggers
try:
    host = Host(__import__("pathlib").Path(sys.argv[2]))
except WorkerRefused as refused:
    print(json.dumps({"refused": str(refused)}))
    raise SystemExit(0)
calls = {}
for name in json.loads(sys.argv[3]):
    data = triggers.http_request(method="GET", url="http://localhost/api/x", headers={}, query={}, params={}, body=b"")
    try:
        asyncio.run(host.invoke(name, data))
        calls[name] = "ok"
    except FunctionFailed as failed:
        calls[name] = failed.message
print(json.dumps({"loaded": sorted(host.functions), "calls": calls}))
"""


def start_host(app: Path, call: tuple[str, ...] = ()) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-c", HOST_SCRIPT, str(ROOT), str(app), json.dumps(call)], cwd=app,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def copy_of_the_app(tmp_path: Path) -> Path:
    for name in ("function_app.py", "host.json"):
        shutil.copy(ROOT / name, tmp_path / name)
    for package in ("blueprints", "shared"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_worker_loads_every_function_of_the_app() -> None:
    assert set(FUNCTIONS) == set(CONTRACT_FUNCTIONS)
    for name, function in FUNCTIONS.items():
        assert function.trigger["type"] == CONTRACT_FUNCTIONS[name], name


def test_the_stream_functions_carry_their_retry_policy_to_the_host() -> None:
    for name in ("telemetry_ingest", "inference_ingest", "command_responses"):
        policy = retry_policy(name)
        assert (policy["strategy"], policy["max_retry_count"]) == ("exponential_backoff", 8), name
        assert policy["minimum_interval"].total_seconds() == 5 and policy["maximum_interval"].total_seconds() == 300


def test_the_app_loads_in_a_fresh_worker_as_func_start_loads_it(tmp_path: Path) -> None:
    started = start_host(copy_of_the_app(tmp_path))
    assert set(started["loaded"]) == set(CONTRACT_FUNCTIONS)


def test_a_pep585_list_on_a_batch_parameter_fails_the_whole_app(tmp_path: Path) -> None:
    """The worker refuses ``list[func.EventHubEvent]`` on Python 3.11+ (worker issue
    #1034); one refused function means no function of the app loads, HTTP included."""
    app = copy_of_the_app(tmp_path)
    telemetry = app / "blueprints" / "telemetry.py"
    source = telemetry.read_text()
    assert "events: List[func.EventHubEvent]" in source
    telemetry.write_text(source.replace("events: List[func.EventHubEvent]", "events: list[func.EventHubEvent]"))
    started = start_host(app)
    assert "refused" in started, started
    assert "cannot load the telemetry_ingest function: binding events has invalid non-type annotation " \
           "list[azure.functions._eventhub.EventHubEvent]" in started["refused"]


SCRATCH_APP = '''
import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="dict")
async def returns_a_dict(req: func.HttpRequest) -> func.HttpResponse:
    return {"not": "a response"}  # type: ignore


@app.route(route="ok")
async def returns_a_response(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("ok")
'''


def test_an_answer_the_worker_cannot_convert_fails_the_invocation(tmp_path: Path) -> None:
    (tmp_path / "function_app.py").write_text(SCRATCH_APP)
    started = start_host(tmp_path, ("returns_a_dict", "returns_a_response"))
    assert started["calls"]["returns_a_response"] == "ok"
    assert started["calls"]["returns_a_dict"].startswith("TypeError: unable to encode outgoing TypedData")


def test_a_return_annotation_the_worker_does_not_take_fails_the_app(tmp_path: Path) -> None:
    (tmp_path / "function_app.py").write_text(SCRATCH_APP.replace(
        "async def returns_a_response(req: func.HttpRequest) -> func.HttpResponse:",
        "async def returns_a_response(req: func.HttpRequest) -> dict:"))
    started = start_host(tmp_path)
    assert 'Python return annotation "dict" does not match binding type "http"' in started["refused"]


def test_the_protocol_messages_refuse_what_protobuf_refuses() -> None:
    with pytest.raises(ValueError, match='has no "bodyy" field'):
        rpc.RpcHttp(bodyy=rpc.TypedData(bytes=b""))
    with pytest.raises(TypeError, match=r"RpcHttp\.status_code"):
        rpc.RpcHttp(status_code=200)
    with pytest.raises(TypeError, match=r"CollectionSInt64\.sint64"):
        rpc.CollectionSInt64(sint64=["1"])
    with pytest.raises(TypeError, match=r"TypedData\.int"):
        rpc.TypedData(int=True)
    with pytest.raises(ValueError, match="oneof data"):
        rpc.TypedData(string="a", bytes=b"a")
    with pytest.raises(TypeError, match=r"RpcHttp\.headers"):
        rpc.RpcHttp(headers={"a": 1})


def test_unset_fields_read_as_protobuf_defaults() -> None:
    empty = rpc.InvocationRequest()
    assert (empty.retry_context.retry_count, empty.input_data, empty.trigger_metadata) == (0, [], {})
    assert empty.trace_context.trace_parent == ""
    assert rpc.TypedData().WhichOneof("data") is None
    assert rpc.TypedData(json="{}").WhichOneof("data") == "json"
    assert rpc.TypedData(string=None).WhichOneof("data") is None  # None leaves a field unset
