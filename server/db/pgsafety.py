"""Is the configured PostgreSQL role safe to serve raw SQL through, and what would a safe one look like?

A READ ONLY transaction stops writes to tables, but not what a powerful role can do outside them: a
superuser, or a member of pg_read_server_files / pg_write_server_files / pg_execute_server_program, can
read or write the server's files or run programs with plain SELECTs; a member of pg_signal_backend can
cancel or end other roles' sessions. Even an ordinary role may, by default (EXECUTE granted to PUBLIC),
cancel or end other sessions of its own role (pg_cancel_backend, pg_terminate_backend), write to the WAL
(pg_logical_emit_message), take advisory locks that other programs wait on, and create or read large
objects, all inside a READ ONLY transaction. So the backend inspects its own role once per connect
(has_function_privilege for each of those functions), refuses raw SQL through a role that can do any of
it unless the owner opted in, and `voka-bridge check` prints the SQL for a least-privilege role that
cannot: a dedicated login, and EXECUTE on those functions revoked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

# Functions in pg_catalog that a READ ONLY transaction does not stop and that reach beyond the statement:
# what each group lets a caller do, and the functions (every overload). The advisory *unlock* functions
# are not here: they only release what the session itself holds (the backend calls
# pg_advisory_unlock_all() after every read).
RISKY_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "can cancel or end other sessions of its own role": ("pg_cancel_backend", "pg_terminate_backend"),
    "can write to the write-ahead log": ("pg_logical_emit_message",),
    "can take advisory locks that other sessions wait on": (
        "pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared",
        "pg_advisory_xact_lock", "pg_advisory_xact_lock_shared", "pg_try_advisory_xact_lock",
        "pg_try_advisory_xact_lock_shared"),
    "can create, read or remove large objects": (
        "lo_close", "lo_creat", "lo_create", "lo_export", "lo_from_bytea", "lo_get", "lo_import", "lo_lseek",
        "lo_lseek64", "lo_open", "lo_put", "lo_tell", "lo_tell64", "lo_truncate", "lo_truncate64",
        "lo_unlink", "loread", "lowrite"),
}
_RISKY_NAMES = ", ".join(f"'{name}'" for names in RISKY_FUNCTIONS.values() for name in names)

# MEMBER (not USAGE): a role that can merely SET ROLE into a powerful one is as powerful.
ROLE_SQL = f"""
SELECT current_user AS name, current_database() AS database,
       r.rolsuper AS superuser,
       pg_has_role(current_user, 'pg_execute_server_program', 'MEMBER') AS run_programs,
       pg_has_role(current_user, 'pg_read_server_files', 'MEMBER') AS read_files,
       pg_has_role(current_user, 'pg_write_server_files', 'MEMBER') AS write_files,
       pg_has_role(current_user, 'pg_signal_backend', 'MEMBER') AS signal_backends,
       r.rolcreaterole AS create_role,
       r.rolbypassrls AS bypass_rls,
       ARRAY(SELECT DISTINCT p.proname::text FROM pg_catalog.pg_proc p
             WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proname IN ({_RISKY_NAMES})
               AND has_function_privilege(p.oid, 'EXECUTE')
             ORDER BY 1) AS risky_functions
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
    signal_backends: bool = False
    risky_functions: tuple[str, ...] = field(default_factory=tuple)  # of RISKY_FUNCTIONS, executable

    @classmethod
    def from_row(cls, row: Any) -> RoleReport:
        values = {key: row[key] for key in ("name", "database", "superuser", "run_programs", "read_files",
                                            "write_files", "create_role", "bypass_rls", "signal_backends")}
        return cls(**values, risky_functions=tuple(row["risky_functions"] or ()))

    def powers(self) -> list[str]:
        """What this role can do beyond reading and writing the shop's tables."""
        found = []
        if self.superuser:
            found.append("is a superuser (can do anything on the server)")
            return found
        if self.run_programs:
            found.append("can run programs on the database server (pg_execute_server_program)")
        if self.read_files:
            found.append("can read files on the database server (pg_read_server_files)")
        if self.write_files:
            found.append("can write files on the database server (pg_write_server_files)")
        if self.signal_backends:
            found.append("can cancel or end other roles' sessions (member of pg_signal_backend)")
        executable = set(self.risky_functions)
        for what, names in RISKY_FUNCTIONS.items():
            granted = [name for name in names if name in executable]
            if granted:
                shown = ", ".join(granted[:4]) + (", ..." if len(granted) > 4 else "")
                found.append(f"{what} (may execute {shown})")
        return found

    @cached_property
    def privileged(self) -> bool:
        """Asked by every raw read: worked out once (the report never changes)."""
        return bool(self.powers())

    def refusal(self) -> str:
        """The message a raw SQL caller gets while this role is used without the owner's opt-in."""
        powers = self.powers()
        more = f" (and {len(powers) - 1} more)" if len(powers) > 1 else ""
        return (f"Raw SQL is turned off: the database role {self.name!r} {powers[0]}{more}. The owner can "
                "connect with a least-privilege role (`voka-bridge check` prints the SQL) or set "
                "[database] allow_privileged_role = true. Catalog tools still work.")


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


def revoke_risky_sql(role: str = "voka_bridge") -> str:
    """The REVOKE part of least_privilege_sql: EXECUTE on RISKY_FUNCTIONS (every overload, whatever the
    server's version) from PUBLIC and from `role`, in the current database."""
    names = ", ".join(f"'{name}'" for group in RISKY_FUNCTIONS.values() for name in group)
    literal = "'" + role.replace("'", "''") + "'"
    return "\n".join([
        "DO $$",
        "DECLARE f regprocedure;",
        "BEGIN",
        "  FOR f IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p",
        "           WHERE p.pronamespace = 'pg_catalog'::regnamespace",
        f"             AND p.proname IN ({names})",
        "  LOOP",
        f"    EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC, %I', f, {literal});",
        "  END LOOP;",
        "END $$;",
    ])


def least_privilege_sql(database: str, written: dict[str, list[str]], role: str = "voka_bridge") -> str:
    """SQL an administrator runs once to create a login that can do exactly what the catalog needs, and
    nothing a READ ONLY transaction lets through (see RISKY_FUNCTIONS)."""
    who = quote_ident(role)
    lines = [
        "-- Run as a superuser (the REVOKEs below change functions that belong to the system), then put",
        "-- the role in [database] url and store its password with `voka-bridge db set-password`.",
        "-- Use this role for Voka Bridge only, and never GRANT it pg_signal_backend or another role.",
        f"CREATE ROLE {who} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS "
        "PASSWORD 'choose-a-long-random-password';",
        f"GRANT CONNECT ON DATABASE {quote_ident(database)} TO {who};",
        f"GRANT USAGE ON SCHEMA public TO {who};",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {who};",
    ]
    for table, verbs in written.items():
        lines.append(f"GRANT {', '.join(verbs)} ON {table} TO {who};")
    if written:
        lines.append(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {who};")
    lines += [
        "-- Every role may call these functions by default, and a READ ONLY transaction does not stop",
        "-- them: cancel or end other sessions of the same role, write to the WAL, take advisory locks,",
        "-- use large objects. PostgreSQL cannot take from one role what PUBLIC may do, so this takes",
        f"-- EXECUTE on them from PUBLIC, in database {quote_ident(database)} only (superusers keep it).",
        "-- If another program connects to this database as an ordinary role and needs one of them,",
        "-- grant it back to that role, e.g.",
        "--   GRANT EXECUTE ON FUNCTION pg_catalog.pg_advisory_lock(bigint) TO your_till_role;",
        revoke_risky_sql(role),
    ]
    return "\n".join(lines)
