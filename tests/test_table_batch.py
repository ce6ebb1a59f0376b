"""Entity-group transactions framed by the app (shared/platform/table_batch.py),
against Azurite: all or nothing, refusals with the operation's index and status,
each type written as the SDK reads it back, keys that need escaping."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.platform.storage import data_store
from shared.platform.table_batch import TransactionRefused, _odata, submit

pytestmark = pytest.mark.usefixtures("app_env")


def table(run: Any) -> Any:
    async def make() -> Any:
        name = f"tx{uuid.uuid4().hex[:10]}"
        return await data_store().table(name)

    return run(make())


def test_creates_and_replaces_apply_together_and_read_back_as_written(run: Any) -> None:
    client = table(run)
    # Text the emulator refused raw in a part (U+2028), a binary property of 64 KiB, both integer widths.
    row = {"PartitionKey": "p|1", "RowKey": "capteur-é~7E'q%~|telemetry", "text": "é\u2028x",
           "blob": b"\x00\xff" * 32_768, "small": 7, "large": 2**40, "ratio": 0.25, "flag": True}
    [etag] = run(submit(client, [(row, None)]))
    assert run(client.get_entity("p|1", row["RowKey"])).metadata["etag"] == etag
    changed = row | {"text": "second"}
    other = {"PartitionKey": "p|1", "RowKey": "b", "text": "new"}
    etags = run(submit(client, [(changed, etag), (other, None)]))
    stored = run(client.get_entity("p|1", row["RowKey"]))
    assert len(etags) == 2 and stored.metadata["etag"] == etags[0]
    assert {k: stored[k] for k in row} == changed | {"large": stored["large"]} and stored["large"].value == 2**40


@pytest.mark.parametrize("stale", ["create", "replace"])
def test_one_refused_operation_refuses_all_with_its_index_and_status(run: Any, stale: str) -> None:
    client = table(run)
    [etag] = run(submit(client, [({"PartitionKey": "p", "RowKey": "a", "v": 1}, None)]))
    run(submit(client, [({"PartitionKey": "p", "RowKey": "a", "v": 2}, etag)]))  # etag is stale now
    refused = ({"PartitionKey": "p", "RowKey": "a", "v": 3}, None if stale == "create" else etag)
    with pytest.raises(TransactionRefused) as caught:
        run(submit(client, [({"PartitionKey": "p", "RowKey": "c", "v": 1}, None), refused]))
    assert (caught.value.status_code, caught.value.index) == ((409, 1) if stale == "create" else (412, 1))
    assert run(client.get_entity("p", "a"))["v"] == 2
    assert not run(_rows(client, "c")), "nothing of a refused transaction is applied"


async def _rows(client: Any, row: str) -> list[Any]:
    return [e async for e in client.query_entities("RowKey eq @r", parameters={"r": row})]


def test_a_type_the_transactions_do_not_write_is_a_type_error_before_anything_is_sent() -> None:
    assert _odata({"a": 2**31, "b": -(2**31), "n": None}) == {"a": str(2**31), "a@odata.type": "Edm.Int64",
                                                               "b": -(2**31)}
    with pytest.raises(TypeError, match="'when'"):
        _odata({"when": datetime.now(UTC)})
