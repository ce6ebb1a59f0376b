"""The continuation tokens' key: one per storage account, shared by every instance."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shared.platform.errors import InvalidInput
from shared.platform.paging import KEY_BYTES, KEY_PARTITION, KEY_ROW, decode_token, encode_token, token_key, token_scope
from shared.platform.settings import StorageSettings, settings_of
from shared.platform.storage import DataStore, data_store, reset_data_store
from shared.platform.storage_names import APP_META_TABLE
from standins.services import Azurite
from tests.conftest import Runner


@pytest.fixture
def no_token_key(app_env: Azurite, run: Runner[Any]) -> Any:
    """The account as before any instance ever signed a token; afterwards the app re-reads the key."""

    async def delete() -> None:
        table = await data_store().table(APP_META_TABLE)
        await table.delete_entity(KEY_PARTITION, KEY_ROW)  # no error when absent

    run(delete())
    yield
    run(reset_data_store())


def test_instances_racing_to_create_the_key_all_end_with_the_one_stored(run: Runner[Any], no_token_key: None) -> None:
    async def race() -> tuple[list[bytes], bytes]:
        instances = [DataStore(settings_of(StorageSettings)) for _ in range(8)]
        try:
            keys = await asyncio.gather(*(token_key(store) for store in instances))
            table = await instances[0].table(APP_META_TABLE)
            stored = (await table.get_entity(KEY_PARTITION, KEY_ROW))["key"]
        finally:
            await asyncio.gather(*(store.close() for store in instances))
        return list(keys), stored

    keys, stored = run(race())
    assert len(stored) == KEY_BYTES
    assert keys == [stored] * len(keys)


def test_a_token_signed_by_one_instance_is_accepted_by_another_and_only_for_its_scope(run: Runner[Any]) -> None:
    scope = token_scope("list_things", colour="red", size=3)
    assert scope == token_scope("list_things", size=3, colour="red"), "filters in any order name one query"
    next_keys = {"PartitionKey": "p~2F1", "RowKey": "registry"}

    async def sign_and_check() -> tuple[Any, ...]:
        one, other = DataStore(settings_of(StorageSettings)), DataStore(settings_of(StorageSettings))
        try:
            token = await encode_token(one, scope, next_keys)
            assert token is not None and "p~2F1" not in token
            for other_scope in (token_scope("list_things", colour="red"),
                                token_scope("list_other", colour="red", size=3)):
                with pytest.raises(InvalidInput, match="not a token this API issued for this query"):
                    await decode_token(other, other_scope, token)
            return await decode_token(other, scope, token), await encode_token(one, scope, {}), \
                await decode_token(other, scope, None)
        finally:
            await one.close()
            await other.close()

    decoded, no_token, first_page = run(sign_and_check())
    assert decoded == next_keys
    assert no_token is None and first_page is None
