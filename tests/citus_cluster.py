"""Fresh databases on a Citus cluster, for tests: made on the coordinator and on every
worker, with the extension created and the workers added, and dropped on every node after.

A test run's database must be a Citus database from its first migration, or the
migrations would make plain tables that nobody distributes; and Citus keeps its node
list per database, so each new database is told its workers.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url


@dataclass(frozen=True)
class Cluster:
    """A coordinator (as the admin URL names it) and its workers (host, port)."""

    admin_url: URL
    workers: tuple[tuple[str, int], ...]

    def node_urls(self, database: str) -> list[URL]:
        """`database` on the coordinator, then on each worker."""
        coordinator = self.admin_url.set(database=database)
        return [coordinator] + [
            self.admin_url.set(host=host, port=port, database=database)
            for host, port in self.workers
        ]


def cluster_at(admin_url: str) -> Cluster | None:
    """The Citus cluster whose coordinator `admin_url` names (its database has the citus
    extension), or None when it is a PostgreSQL without Citus there."""
    url = make_url(admin_url)
    engine = create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            if (
                connection.execute(
                    text("SELECT 1 FROM pg_extension WHERE extname = 'citus'")
                ).first()
                is None
            ):
                return None
            workers = connection.execute(
                text(
                    "SELECT nodename, nodeport FROM pg_dist_node"
                    " WHERE groupid <> 0 AND noderole = 'primary' ORDER BY nodeid"
                )
            ).all()
            return Cluster(url, tuple((host, int(port)) for host, port in workers))
    finally:
        engine.dispose()


def create_database(cluster: Cluster, name: str, *, citus: bool = True) -> str:
    """Make database `name` on every node, a Citus database with the cluster's workers
    (or, with citus=False, a plain one, for `add_citus` later); returns its URL on the
    coordinator."""
    for node in cluster.node_urls(name):
        _admin_run(node, f'CREATE DATABASE "{name}"')
    if citus:
        add_citus(cluster, name)
    return cluster.node_urls(name)[0].render_as_string(hide_password=False)


def add_citus(cluster: Cluster, name: str) -> None:
    """Create the extension in database `name` on every node, and tell the coordinator's
    copy its workers."""
    for node in cluster.node_urls(name):
        _run(node, "CREATE EXTENSION citus")
    coordinator = cluster.node_urls(name)[0]
    statements = [
        f"SELECT citus_set_coordinator_host('{coordinator.host}', {coordinator.port or 5432})"
    ]
    statements += [f"SELECT citus_add_node('{host}', {port})" for host, port in cluster.workers]
    _run(coordinator, *statements)


def drop_database(cluster: Cluster, name: str) -> None:
    for node in cluster.node_urls(name):
        _admin_run(node, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin_run(node: URL, statement: str) -> None:
    """Run `statement` on the node's `postgres` database (outside any transaction)."""
    _run(node.set(database="postgres"), statement)


def _run(url: URL, *statements: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            for statement in statements:
                connection.execute(text(statement))
    finally:
        engine.dispose()
