"""What the store keeps, read back from the file on disk: per-key records, ``store: false``,
delete, retention by age and by size, the steps of an agent run, the lock that keeps a
second server off a store in use.

The server is real (uvicorn on loopback, the embedded SmolLM2, the official openai client);
the checks open the SQLite file itself, so a record "kept" only in memory would fail them.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from server.api.app import create_app
from server.settings import Settings
from server.store import Store, StoredResponse, StoreError
from server.store.retention import prune, used_bytes
from tests.live_server import LiveServer


def rows(store: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(store) as db:
        return db.execute(sql, args).fetchall()


@pytest.fixture(scope="module")
def stored(real_engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Path]]:
    path = tmp_path_factory.mktemp("store") / "store.db"
    settings = Settings(sandbox_pool_size=0, api_key=["key-a", "key-b"], store=str(path))
    with LiveServer(create_app(settings, real_engine, close_engine=False)) as live:
        yield live, path


def client(live: LiveServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.url + "/v1", api_key=key, max_retries=0)


def test_a_record_is_its_keys_alone_and_delete_removes_it_from_disk(stored: tuple[LiveServer, Path]) -> None:
    live, path = stored
    a, b = client(live, "key-a"), client(live, "key-b")
    made = a.responses.create(model="smollm2-135m", input="Say hi.", max_output_tokens=4, temperature=0)
    assert rows(path, "SELECT count(*) FROM responses WHERE id = ?", made.id) == [(1,)]
    assert a.responses.retrieve(made.id).id == made.id
    with pytest.raises(openai.NotFoundError):
        b.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):  # not even continued from, nor deleted
        b.responses.create(model="smollm2-135m", input="Hi", previous_response_id=made.id, max_output_tokens=4)
    with pytest.raises(openai.NotFoundError):
        b.responses.delete(made.id)
    assert rows(path, "SELECT count(*) FROM responses WHERE id = ?", made.id) == [(1,)]
    a.responses.delete(made.id)
    assert rows(path, "SELECT count(*) FROM responses WHERE id = ?", made.id) == [(0,)]
    with pytest.raises(openai.NotFoundError):
        a.responses.retrieve(made.id)


def test_store_false_writes_nothing(stored: tuple[LiveServer, Path]) -> None:
    live, path = stored
    made = client(live, "key-a").responses.create(
        model="smollm2-135m", input="Say hi.", max_output_tokens=4, temperature=0, store=False
    )
    assert "Say hi" not in path.read_bytes().decode("latin-1")
    assert rows(path, "SELECT count(*) FROM responses WHERE id = ?", made.id) == [(0,)]


def test_an_agent_runs_request_steps_and_outcome_are_on_disk(stored: tuple[LiveServer, Path]) -> None:
    live, path = stored
    reply = httpx.post(
        live.url + "/v1/agent",
        headers={"Authorization": "Bearer key-a"},
        json={
            "model": "smollm2-135m",
            "messages": [{"role": "user", "content": "Compute 2 + 2."}],
            "max_turns": 2,
            "max_tokens": 16,
            "temperature": 0,
        },
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    session_id = reply.json()["agent"]["session_id"]
    deadline = time.monotonic() + 10
    while not rows(path, "SELECT outcome FROM agent_runs WHERE session_id = ? AND outcome IS NOT NULL", session_id):
        assert time.monotonic() < deadline, "the run's outcome was never written"
        time.sleep(0.05)
    (run_id, request, outcome) = rows(
        path, "SELECT id, request, outcome FROM agent_runs WHERE session_id = ?", session_id
    )[0]
    assert "Compute 2 + 2." in str(request) and session_id in str(outcome)
    steps = rows(path, "SELECT number, step FROM steps WHERE run_id = ? ORDER BY number", run_id)
    assert [n for n, _ in steps] == list(range(reply.json()["agent"]["turns"]))
    assert all('"action"' in str(step) for _, step in steps)
    httpx.delete(f"{live.url}/v1/agent/sessions/{session_id}", headers={"Authorization": "Bearer key-a"})
    deadline = time.monotonic() + 10
    while rows(path, "SELECT reason FROM sessions WHERE id = ?", session_id) != [
        (f"agent session '{session_id}' was deleted",)
    ]:
        assert time.monotonic() < deadline, "the session's closing was never written"
        time.sleep(0.05)


def test_a_second_server_on_a_store_in_use_is_refused_by_name(stored: tuple[LiveServer, Path], real_engine) -> None:
    _live, path = stored
    with pytest.raises(StoreError, match="in use by another codeact-server"):
        create_app(Settings(sandbox_pool_size=0, store=str(path)), real_engine, close_engine=False)


def _put(store: Store, response_id: str, size: int) -> None:
    async def put() -> None:
        await store.responses.put(StoredResponse({"id": response_id, "text": "x" * size}, [], []))

    asyncio.run(put())


def test_retention_removes_the_old_then_the_oldest_over_the_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = Store.open(path, max_age_s=3600, max_bytes=1 << 30)
    for number in range(30):
        _put(store, f"resp_{number}", 20_000)
    store.database.call_now(lambda db: db.execute("UPDATE responses SET created = 0 WHERE id = 'resp_0'"))
    for number in range(1, 30):  # in order of creation, a second apart
        store.database.call_now(
            lambda db, n=number: db.execute("UPDATE responses SET created = ? WHERE id = ?", (1000.0 + n, f"resp_{n}"))
        )
    by_age = store.database.call_now(lambda db: prune(db, 3600, 1 << 30, now=1000.0 + 3600 + 0.5))
    assert by_age.by_age == 1 and rows(path, "SELECT count(*) FROM responses WHERE id = 'resp_0'") == [(0,)]
    limit = store.database.call_now(used_bytes) // 2
    by_size = store.database.call_now(lambda db: prune(db, 3600, limit, now=2000.0))
    assert by_size.by_size > 0 and by_size.used_bytes <= limit
    kept = [int(str(i).removeprefix("resp_")) for (i,) in rows(path, "SELECT id FROM responses ORDER BY created")]
    assert kept == list(range(30 - len(kept), 30)), "the oldest go first"
    store.close()


def test_a_run_in_progress_is_never_pruned_and_is_failed_at_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = Store.open(path, max_age_s=3600, max_bytes=1 << 30)
    store.runs.begin("resp_going", "responses", "", {"id": "resp_going", "status": "in_progress"})
    store.runs.add_events("resp_going", [(0, b"event: a\ndata: {}\n\n")])
    store.database.call_now(lambda db: db.execute("UPDATE runs SET created = 0"))
    assert store.database.call_now(lambda db: prune(db, 1, 0)).by_age == 0
    store.close()
    again = Store.open(path, max_age_s=3600, max_bytes=1 << 30)
    assert again.runs.fail_interrupted() == 1
    record = asyncio.run(again.runs.load("resp_going", ""))
    assert record is not None and record.status == "failed" and record.response["error"]["code"] == "server_restart"
    assert asyncio.run(again.runs.load("resp_going", "someone-else")) is None
    again.close()
