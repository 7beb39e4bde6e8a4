"""Is the configured PostgreSQL role safe to serve raw SQL through, and what would a safe one look like?

A READ ONLY transaction stops writes to tables, but not what a powerful role can do outside them: a
superuser, or a member of pg_read_server_files / pg_write_server_files / pg_execute_server_program, can
read or write the server's files or run programs with plain SELECTs. So the backend inspects its own role
once per connect, refuses raw SQL through such a role unless the owner opted in, and `voka-bridge check`
prints the SQL for a least-privilege role.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# MEMBER (not USAGE): a role that can merely SET ROLE into a powerful one is as powerful.
ROLE_SQL = """
SELECT current_user AS name, current_database() AS database,
       r.rolsuper AS superuser,
       pg_has_role(current_user, 'pg_execute_server_program', 'MEMBER') AS run_programs,
       pg_has_role(current_user, 'pg_read_server_files', 'MEMBER') AS read_files,
       pg_has_role(current_user, 'pg_write_server_files', 'MEMBER') AS write_files,
       r.rolcreaterole AS create_role,
       r.rolbypassrls AS bypass_rls
FROM pg_roles r WHERE r.rolname = current_user
"""

_WRITES = re.compile(r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+((?:\"[^\"]+\"|[A-Za-z_][\w$]*)"
                     r"(?:\.(?:\"[^\"]+\"|[A-Za-z_][\w$]*))?)", re.IGNORECASE)


@dataclass(frozen=True)
class RoleReport:
    name: str
    database: str = ""
    superuser: bool = False
    run_programs: bool = False
    read_files: bool = False
    write_files: bool = False
    create_role: bool = False
    bypass_rls: bool = False

    @classmethod
    def from_row(cls, row: Any) -> RoleReport:
        return cls(**{key: row[key] for key in ("name", "database", "superuser", "run_programs", "read_files",
                                                 "write_files", "create_role", "bypass_rls")})

    def powers(self) -> list[str]:
        """What this role can do beyond reading and writing the shop's tables."""
        found = []
        if self.superuser:
            found.append("is a superuser (can do anything on the server)")
        if self.run_programs and not self.superuser:
            found.append("can run programs on the database server (pg_execute_server_program)")
        if self.read_files and not self.superuser:
            found.append("can read files on the database server (pg_read_server_files)")
        if self.write_files and not self.superuser:
            found.append("can write files on the database server (pg_write_server_files)")
        return found

    @property
    def privileged(self) -> bool:
        return bool(self.powers())

    def refusal(self) -> str:
        """The message a raw SQL caller gets while this role is used without the owner's opt-in."""
        return (f"Raw SQL is turned off: the database role {self.name!r} {self.powers()[0]}. The owner can "
                "connect with a least-privilege role (`voka-bridge check` prints the SQL) or set "
                "[database] allow_privileged_role = true.")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def written_tables(action_sql: Iterable[str]) -> dict[str, list[str]]:
    """Table -> privileges the catalog's actions need: a hint for the GRANT advice, never a security check."""
    found: dict[str, dict[str, None]] = {}
    for sql in action_sql:
        for match in _WRITES.finditer(sql):
            verb = match.group(1).split()[0].upper()
            found.setdefault(match.group(2), {})[verb] = None
    return {table: list(verbs) for table, verbs in found.items()}


def least_privilege_sql(database: str, written: dict[str, list[str]], role: str = "voka_bridge") -> str:
    """SQL an administrator runs once to create a login that can do exactly what the catalog needs."""
    who = quote_ident(role)
    lines = [
        "-- Run as the database owner or an administrator, then put the role in [database] url",
        "-- and store its password with `voka-bridge db set-password`.",
        f"CREATE ROLE {who} LOGIN PASSWORD 'choose-a-long-random-password';",
        f"GRANT CONNECT ON DATABASE {quote_ident(database)} TO {who};",
        f"GRANT USAGE ON SCHEMA public TO {who};",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {who};",
    ]
    for table, verbs in written.items():
        lines.append(f"GRANT {', '.join(verbs)} ON {table} TO {who};")
    if written:
        lines.append(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {who};")
    return "\n".join(lines)
