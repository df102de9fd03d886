"""The learning store's tests on SQLite and on a real PostgreSQL server.

``store_location`` is a fixture parametrised over both back ends (import it into a test module):
a SQLite file in the test's folder, or a fresh schema on the PostgreSQL server named by
$KUBIK_TEST_POSTGRES_URL (``bash scripts/postgres_test_cluster.sh start DIR`` prints such a URL;
.ci/run starts one). Without that variable the PostgreSQL cases are skipped, saying so.

Also here: dropping a store's connection in the middle of a transaction (the server ends the
backend, or SQLite's connection is closed under it), writers run as separate processes
("servers"), and, as root, a block in which file permissions apply as they do for any user.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import threading
import uuid

import pytest

POSTGRES_ENV = "KUBIK_TEST_POSTGRES_URL"
POSTGRES_SKIP = (f"PostgreSQL cases need a server: set {POSTGRES_ENV} to a SQLAlchemy URL of a test "
                 "database (bash scripts/postgres_test_cluster.sh start DIR prints one; CI's .ci/run "
                 "starts a server and sets it)")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not os.environ.get(POSTGRES_ENV), reason=POSTGRES_SKIP))]


def _admin_engine():
    from sqlalchemy import create_engine

    return create_engine(os.environ[POSTGRES_ENV], isolation_level="AUTOCOMMIT")


def postgres_url(schema: str, **settings: str) -> str:
    """The test server's URL with ``schema`` first on the search path (plus server settings)."""
    from urllib.parse import quote

    options = " ".join(f"-c{name}={value}" for name, value in
                       {"search_path": schema, "application_name": schema, **settings}.items())
    base = os.environ[POSTGRES_ENV]
    return f"{base}{'&' if '?' in base else '?'}options={quote(options)}"


@contextlib.contextmanager
def postgres_schema():
    """A new, empty schema on the test server; its connections ended and it dropped afterwards."""
    schema = f"kubik_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield schema
    finally:
        with admin.connect() as conn:
            # Every connection of this test carries the schema's name as its application_name.
            conn.exec_driver_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 f"WHERE application_name = '{schema}'")
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def store_location(request, tmp_path):
    """Where a new, empty learning store lives: a SQLite file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        yield str(tmp_path / "learning.sqlite3")
        return
    with postgres_schema() as schema:
        yield postgres_url(schema)


def drop_connection(conn) -> None:
    """End ``conn``'s database connection under it, in the middle of its transaction.

    PostgreSQL: another connection terminates its server backend (pg_terminate_backend), as an
    administrator, a restarting server or a broken network would. SQLite: the connection is closed.
    Either way the open transaction is rolled back by the database, not by the store.
    """
    dbapi = conn.connection.dbapi_connection
    if conn.dialect.name == "postgresql":
        admin = _admin_engine()
        with admin.connect() as other:
            other.exec_driver_sql(f"SELECT pg_terminate_backend({dbapi.info.backend_pid})")
        admin.dispose()
    else:
        dbapi.close()


# ---------------------------------------------------------------- writers as "servers"
def server_writes(location: str, server: int, writers: int, rows: int) -> None:
    """One "server" (a process with its own engine): ``writers`` threads each record the
    ratings of ``rows`` generations of their own, one transaction per rating."""
    from kubik_core.learning import GenerationRecord, LearningStore

    store = LearningStore(location)
    generations = [store.record_generations([GenerationRecord(prompt=f"server {server} writer {w} image {i}")
                                             for i in range(rows)]) for w in range(writers)]
    failures = []

    def write(writer: int) -> None:
        try:
            for i in range(rows):
                store.record_feedback(generations[writer][i], 1 + i % 5, comment=f"{server}:{writer}:{i}")
        except BaseException as exc:  # reported through the exit code
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def first_use(location: str, start, server: int) -> None:
    """A server's first use of a store that may not exist yet, at the same moment as others."""
    from kubik_core.learning import GenerationRecord, LearningStore

    start.wait(60)
    LearningStore(location).record_generation(GenerationRecord(prompt=f"server {server}"))


# ---------------------------------------------------------------- file permissions as root
_CAPABILITY_VERSION_3 = 0x20080522
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


@contextlib.contextmanager
def file_permissions_apply():
    """Within the block, this thread is refused what file permissions refuse.

    Root ignores permission bits (CAP_DAC_OVERRIDE), and CI runs as root; the block drops that
    capability (and CAP_DAC_READ_SEARCH) from this thread's effective set and restores it after.
    For any other user permissions apply anyway.
    """
    if os.geteuid() != 0:
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = _CapHeader(_CAPABILITY_VERSION_3, 0), (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        pytest.skip("running as root, and capabilities cannot be read to make file permissions apply")
    saved = data[0].effective
    data[0].effective &= ~((1 << _CAP_DAC_OVERRIDE) | (1 << _CAP_DAC_READ_SEARCH))
    if libc.capset(ctypes.byref(header), data) != 0:
        pytest.skip("running as root, and CAP_DAC_OVERRIDE cannot be dropped to make file permissions apply")
    try:
        yield
    finally:
        data[0].effective = saved
        libc.capset(ctypes.byref(header), data)
