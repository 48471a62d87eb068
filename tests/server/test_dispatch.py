"""Dispatcher.call's fast path (get/put inlined) answers exactly as the general path.

The fast path is taken only for a params *list*; the same params as a tuple take
the general path (validate_params and the handlers), so each case runs both ways.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bitcask
from protocol import METHODS
from server._dispatch import Dispatcher
from server._metrics import Metrics
from server._outcome import Done, Read, Write
from server._writer import Writer
from server.config import ServerConfig

MAX_KEY = 16
MAX_VALUE = 32

CASES: list[Any] = [
    pytest.param("get", [b"here"], id="get"),
    pytest.param("get", [b"missing"], id="get-missing"),
    pytest.param("get", [b"k" * (MAX_KEY + 1)], id="get-key-too-large"),
    pytest.param("get", ["here"], id="get-str-key"),
    pytest.param("get", [], id="get-no-key"),
    pytest.param("get", [b"a", b"b"], id="get-two-keys"),
    pytest.param("get", [7], id="get-int-key"),
    pytest.param("put", [b"k", b"v"], id="put"),
    pytest.param("put", [b"k" * (MAX_KEY + 1), b"v"], id="put-key-too-large"),
    pytest.param("put", [b"k", b"v" * (MAX_VALUE + 1)], id="put-value-too-large"),
    pytest.param("put", [b"k", "v"], id="put-str-value"),
    pytest.param("put", [b"k", None], id="put-nil-value"),
    pytest.param("put", [b"k", b"v", {"ttl": 1e300}], id="put-ttl-too-far"),
    pytest.param("put", [b"k", b"v", {"ttl": 5}], id="put-ttl"),
]


@pytest.fixture
async def dispatcher(tmp_path: Path) -> AsyncIterator[Dispatcher]:
    db = bitcask.open(tmp_path / "db", sync="never", max_key_size=MAX_KEY, max_value_size=MAX_VALUE)
    db.put(b"here", b"v")
    writer = Writer(db, mode="loop", metrics=Metrics())
    cfg = ServerConfig(data=tmp_path / "db", port=0, http_port=0, auth="tok")
    yield Dispatcher(
        db, writer, cfg, max_key_size=MAX_KEY, max_value_size=MAX_VALUE, server_stats=dict
    )
    await asyncio.wait_for(writer.wait_idle(), 5)
    db.close()


def answer(d: Dispatcher, authenticated: bool, method: str, params: Any) -> Any:
    """What the client would get: Done/Read evaluated, Write as its ops and shape."""
    session = d.new_session()
    session.authenticated = authenticated
    outcome = d.call(session, method, params)
    if type(outcome) is Done:
        return ("done", outcome.result, None if outcome.error is None else outcome.error.code)
    if type(outcome) is Read:
        return ("read", outcome.fn(outcome.arg))
    assert type(outcome) is Write
    ops = outcome.ops
    shape = outcome.shape
    return (
        "write",
        [op[:3] for op in ops],
        [op[3] is None for op in ops],
        outcome.nbytes,
        shape,
        outcome.sync,
    )


@pytest.mark.parametrize(("method", "params"), CASES)
@pytest.mark.parametrize("authenticated", [True, False])
@pytest.mark.parametrize("shutting_down", [False, True])
def test_fast_and_general_paths_answer_identically(
    dispatcher: Dispatcher,
    method: str,
    params: list[Any],
    authenticated: bool,
    shutting_down: bool,
) -> None:
    dispatcher.shutting_down = shutting_down
    fast = answer(dispatcher, authenticated, method, list(params))
    general = answer(dispatcher, authenticated, method, tuple(params))
    assert fast == general


leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats()
    | st.binary(max_size=20)
    | st.text(max_size=8)
)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["ttl", "prefix", "cursor", "count", "x"]), inner, max_size=3
        )
    ),
    max_leaves=8,
)
ttls = st.one_of(
    st.floats(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([1e300, 1e17, 9.2e15, 2**63, float("nan")]),
)
put_like = st.tuples(
    st.just("put"),
    st.tuples(st.binary(max_size=20), st.binary(max_size=40), st.fixed_dictionaries({"ttl": ttls})),
).map(lambda mp: (mp[0], list(mp[1])))
batch_like = st.lists(
    st.tuples(
        st.just("put"),
        st.binary(max_size=20),
        st.binary(max_size=40),
        st.fixed_dictionaries({"ttl": ttls}),
    ).map(list),
    max_size=3,
).map(lambda ops: ("batch", [ops]))
requests = st.one_of(
    st.tuples(st.sampled_from([*sorted(METHODS), "nope"]), st.lists(values, max_size=3)),
    put_like,
    batch_like,
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(request=requests)
def test_no_request_is_internal_and_every_accepted_write_is_one_the_engine_takes(
    dispatcher: Dispatcher, request: tuple[str, list[Any]]
) -> None:
    # Validation is complete before a write joins a group: whatever the dispatcher
    # accepts, the engine applies without raising (so it can never spoil a group).
    method, params = request
    session = dispatcher.new_session()
    session.authenticated = True
    outcome = dispatcher.call(session, method, params)
    if type(outcome) is Done:
        assert outcome.error is None or outcome.error.name != "INTERNAL", outcome.error
    elif type(outcome) is Read:
        outcome.fn(outcome.arg)
    elif type(outcome) is Write and outcome.ops:
        dispatcher._db.write_batch(outcome.ops)  # raises on anything the engine refuses
