"""The two warehouse dialects stay in step: same files, same parameters, parseable SQL.

SQL Server cannot run here, so `sql/mssql/` is checked statically: sqlglot parses every file
as T-SQL, and the conventions the Azure SQL adapter relies on (one batch per file,
`DECLARE @name TYPE = ?;` parameters at the top, SET NOCOUNT ON, `#` temp tables) are checked
against the DuckDB file of the same name.

sqlglot has no parser for THROW, so build_days.sql fails with RAISERROR + RETURN, and schema.sql
parenthesises its `IF (...) EXEC` conditions (without them sqlglot reads EXEC as an alias).
sqlglot also nests every statement after a T-SQL IF into the IF's block; the helpers below
flatten those blocks, so no statement is skipped.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from shared.adapters.sql_files import SQL_ROOT, statements
from shared.adapters.warehouse_mssql import sql_file
from shared.adapters.warehouse_sql import SCHEMA_VERSIONS

DUCKDB = SQL_ROOT / "duckdb"
MSSQL = SQL_ROOT / "mssql"
CURRENT_FILES = {
    "build_days",
    "churn_risk_on_day",
    "company_daily_activity",
    "crm_snapshot_state",
    "schema",
    "stage_crm_snapshot",
    "stage_usage_day",
    "summary_days",
    "usage_dataset_state",
}
# Filled by the adapter before a batch runs, or created by the batch itself.
TEMP_TABLES = (
    "incoming_usage",
    "incoming_crm",
    "build_day",
    "build_plan",
    "build_source",
    "build_changes",
    "build_removed",
)

DUCKDB_PARAM = re.compile(r"\$([A-Za-z_]\w*)")
MSSQL_PARAM_LINE = re.compile(r"^DECLARE @(\w+) ([^=;\n]+?) = \?;$")
GO_LINE = re.compile(r"^\s*GO\s*(--.*)?$", re.IGNORECASE | re.MULTILINE)
COMMENT = re.compile(r"--[^\n]*")
BARE_TEMP_TABLE = re.compile(rf"(?<![#\w])({'|'.join(TEMP_TABLES)})\b")


def names(folder: Path) -> set[str]:
    return {p.stem for p in folder.glob("*.sql")}


ALL_NAMES = sorted(names(DUCKDB) | names(MSSQL) | CURRENT_FILES)


def text(folder: Path, name: str) -> str:
    path = folder / f"{name}.sql"
    if not path.is_file():
        pytest.fail(f"{path.relative_to(SQL_ROOT.parent)} is missing")
    return path.read_text(encoding="utf-8")


@cache
def parsed(dialect: str, name: str) -> tuple[exp.Expr, ...]:
    folder, read = (MSSQL, "tsql") if dialect == "mssql" else (DUCKDB, "duckdb")
    return tuple(e for e in sqlglot.parse(text(folder, name), read=read) if e is not None)


def flat(statements: tuple[exp.Expr, ...]) -> Iterator[exp.Expr]:
    """Top-level statements, with sqlglot's T-SQL IF blocks opened up."""
    for statement in statements:
        if isinstance(statement, exp.IfBlock):
            yield from flat(tuple(statement.args["true"].expressions))
            false = statement.args.get("false")
            if false:
                yield from flat(tuple(false.expressions))
        elif not isinstance(statement, exp.EndStatement):
            yield statement


def returns_rows(statement: exp.Expr) -> bool:
    """A SELECT that sends a result set: not SELECT ... INTO, not SELECT @variable = ..."""
    if not isinstance(statement, exp.Select) or statement.args.get("into"):
        return False
    return not all(isinstance(e, exp.EQ) and isinstance(e.this, exp.Parameter) for e in statement.expressions)


def result_columns(dialect: str, name: str) -> list[list[str]]:
    return [s.named_selects for s in flat(parsed(dialect, name)) if returns_rows(s)]


def mssql_params(name: str) -> list[tuple[str, str]]:
    """(name, type) of each `DECLARE @name TYPE = ?;` line, in binding order."""
    lines = text(MSSQL, name).splitlines()
    return [(m[1], m[2]) for m in map(MSSQL_PARAM_LINE.match, lines) if m]


# --- 1. the same files -------------------------------------------------------------------------


def test_both_dialects_hold_the_same_files() -> None:
    assert names(DUCKDB) >= CURRENT_FILES, f"missing from sql/duckdb: {CURRENT_FILES - names(DUCKDB)}"
    assert names(MSSQL) == names(DUCKDB), (
        f"only in sql/duckdb: {sorted(names(DUCKDB) - names(MSSQL))}; "
        f"only in sql/mssql: {sorted(names(MSSQL) - names(DUCKDB))}"
    )
    assert not [p.name for p in MSSQL.iterdir() if p.suffix != ".sql"], "stray files in sql/mssql"


# --- 2. and 3. every file parses in its dialect --------------------------------------------------


@pytest.mark.parametrize("dialect", ["mssql", "duckdb"])
@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_file_parses(dialect: str, name: str) -> None:
    statements = parsed(dialect, name)  # raises ParseError on invalid syntax
    assert statements, f"{dialect}/{name}.sql parsed to nothing"
    # Unsupported syntax makes sqlglot fall back to an unparsed Command instead of raising.
    commands = [c.sql()[:80] for s in statements for c in s.find_all(exp.Command)]
    assert not commands, f"{dialect}/{name}.sql has statements sqlglot did not parse: {commands}"


IF_HEAD = re.compile(r"^[ \t]*IF\b[ \t]*", re.IGNORECASE | re.MULTILINE)
STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)


def if_bodies(sql: str) -> list[str]:
    """The first statement of each IF's body, BEGIN stripped.

    sqlglot parses it in one piece with the IF's condition and, unlike every other statement,
    does not check that it consumed all of it (`THROW 51000, N'x', 1` would pass as a column
    named THROW). So these statements are parsed once more on their own. Convention: an IF's
    condition is wrapped in parentheses or ends at the end of its line.
    """
    code = COMMENT.sub("", sql)
    bodies = []
    for head in IF_HEAD.finditer(code):
        end, depth, wrapped = head.end(), 0, code[head.end()] == "("
        while end < len(code) and not (depth == 0 and code[end] == "\n"):
            depth += {"(": 1, ")": -1}.get(code[end], 0)
            end += 1
            if wrapped and depth == 0:
                break
        assert not STATEMENT_END.search(code, head.end(), end), (
            f"IF {code[head.end() : end]!r}: wrap the condition in parentheses or end its line"
        )
        stop = STATEMENT_END.search(code, end)
        assert stop, "an IF without a statement ending in ; at the end of a line"
        body = code[end : stop.end()].strip()
        bodies.append(re.sub(r"^BEGIN\b", "", body, flags=re.IGNORECASE).strip())
    return bodies


@pytest.mark.parametrize("name", ALL_NAMES)
def test_the_first_statement_of_every_if_parses_alone(name: str) -> None:
    for body in if_bodies(text(MSSQL, name)):
        statement = sqlglot.parse_one(body, read="tsql")  # raises on leftover tokens
        assert not isinstance(statement, exp.Column | exp.Command), f"sqlglot did not understand: {body}"


# --- 4. parameters -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_NAMES)
def test_mssql_declares_exactly_the_duckdb_parameters(name: str) -> None:
    declared = [n for n, _ in mssql_params(name)]
    assert len(declared) == len(set(declared)), f"mssql/{name}.sql declares a parameter twice"
    assert set(declared) == set(DUCKDB_PARAM.findall(text(DUCKDB, name)))
    assert "$" not in text(MSSQL, name), f"mssql/{name}.sql still has a DuckDB $parameter"
    for number, line in enumerate(text(MSSQL, name).splitlines(), 1):
        if "?" in line:
            assert MSSQL_PARAM_LINE.match(line), f"mssql/{name}.sql:{number}: ? outside a DECLARE: {line}"


@pytest.mark.parametrize("name", ALL_NAMES)
def test_the_adapter_binds_the_declared_parameters_in_order(name: str) -> None:
    assert list(sql_file(name)[1]) == [n for n, _ in mssql_params(name)]


def test_a_parameter_has_one_type_in_every_file() -> None:
    types: dict[str, set[str]] = {}
    for name in ALL_NAMES:
        for param, kind in mssql_params(name):
            types.setdefault(param, set()).add(kind)
    assert {p: k for p, k in types.items() if len(k) > 1} == {}


# --- 5. one batch per file -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_NAMES)
def test_mssql_file_is_one_batch_with_its_declarations_on_top(name: str) -> None:
    sql = text(MSSQL, name)
    assert not GO_LINE.search(sql), f"mssql/{name}.sql contains a GO line"
    lines = sql.splitlines()
    assert lines and (lines[0] == "SET NOCOUNT ON;" or MSSQL_PARAM_LINE.match(lines[0])), (
        f"mssql/{name}.sql must start with SET NOCOUNT ON; or a DECLARE, not {lines[:1]}"
    )
    head: list[str] = []  # the lines before the first statement that does any work
    for line in lines:
        stripped = line.strip()
        if stripped and not stripped.startswith(("--", "SET ")) and not MSSQL_PARAM_LINE.match(line):
            break
        head.append(line)
    assert "SET NOCOUNT ON;" in head, f"mssql/{name}.sql: SET NOCOUNT ON; must come before any work"
    params_on_top = [m[1] for m in map(MSSQL_PARAM_LINE.match, head) if m]
    assert params_on_top == [n for n, _ in mssql_params(name)], (
        f"mssql/{name}.sql: a DECLARE ... = ? below the top"
    )


@pytest.mark.parametrize("name", ALL_NAMES)
def test_mssql_result_sets_match_duckdb(name: str) -> None:
    """Same result columns in the same order; the T-SQL batch sends no other result set."""
    duck = result_columns("duckdb", name)[-1:]  # the DuckDB adapter keeps the last statement's rows
    ms = result_columns("mssql", name)
    assert ms == duck
    last = list(flat(parsed("mssql", name)))[-1]
    assert not ms or returns_rows(last), f"mssql/{name}.sql: its result set must be the last statement"


# --- the same tables -----------------------------------------------------------------------------


def created_tables(dialect: str) -> dict[str, list[str]]:
    return {
        f"{c.this.this.db}.{c.this.this.name}": [
            d.name for d in c.this.expressions if isinstance(d, exp.ColumnDef)
        ]
        for c in flat(parsed(dialect, "schema"))
        if isinstance(c, exp.Create) and c.kind == "TABLE"
    }


def test_schemas_create_the_same_tables_and_columns() -> None:
    assert created_tables("mssql") == created_tables("duckdb")


# T-SQL's CREATE VIEW must be alone in its batch, so mssql/schema.sql creates its views through
# sp_executesql: the view's text is a string literal, parsed here on its own.
MSSQL_VIEW = re.compile(
    r"EXEC sp_executesql @stmt = N'(CREATE OR ALTER VIEW .*?)';\s*$", re.DOTALL | re.MULTILINE
)


def created_views(dialect: str) -> dict[str, list[str]]:
    if dialect == "mssql":
        bodies = [m.replace("''", "'") for m in MSSQL_VIEW.findall(text(MSSQL, "schema"))]
        statements = [
            statement for body in bodies for statement in sqlglot.parse(body, read="tsql") if statement
        ]
    else:
        statements = list(flat(parsed(dialect, "schema")))
    return {
        f"{c.this.db}.{c.this.name}": c.expression.named_selects
        for c in statements
        if isinstance(c, exp.Create) and c.kind == "VIEW"
    }


def test_schemas_create_the_same_views_with_the_same_columns() -> None:
    views = created_views("duckdb")
    assert set(views) == {"analytics.company_weekly_activity", "analytics.company_monthly_activity"}
    assert created_views("mssql") == views


@pytest.mark.parametrize("dialect", ["mssql", "duckdb"])
@pytest.mark.parametrize("name", ALL_NAMES)
def test_files_use_only_tables_of_the_schema(dialect: str, name: str) -> None:
    known = set(created_tables(dialect)) | set(created_views(dialect))
    used = {
        f"{t.db}.{t.name}"
        for s in parsed(dialect, name)
        for t in s.find_all(exp.Table)
        if t.name and t.db and t.db != "sys"
    }
    assert used <= known, f"{dialect}/{name}.sql uses tables the schema does not create: {used - known}"


def test_mssql_indexes_for_the_access_paths() -> None:
    indexes = {
        (
            c.this.name,
            f"{c.this.args['table'].db}.{c.this.args['table'].name}",
            tuple(col.name for col in c.this.args["params"].args["columns"]),
        )
        for c in flat(parsed("mssql", "schema"))
        if isinstance(c, exp.Create) and "INDEX" in (c.kind or "")
    }
    assert indexes == {
        (
            "ix_company_daily_activity_company",
            "analytics.company_daily_activity",
            ("company_id", "activity_date"),
        )
    }
    # sqlglot reads `CONSTRAINT pk PRIMARY KEY CLUSTERED (a, b)` as a PrimaryKeyColumnConstraint
    # next to a ClusteredColumnConstraint that holds the key's columns.
    keys = {
        f"{c.this.this.db}.{c.this.this.name}": [o.this.name for o in clustered.this]
        for c in flat(parsed("mssql", "schema"))
        if isinstance(c, exp.Create) and c.kind == "TABLE"
        for constraint in c.this.find_all(exp.Constraint)
        if constraint.find(exp.PrimaryKeyColumnConstraint)
        for clustered in constraint.find_all(exp.ClusteredColumnConstraint)
    }
    assert keys == {
        "stg.product_usage_daily": ["activity_date", "company_id"],
        "stg.usage_dataset": ["activity_date"],
        "stg.usage_unknown": ["activity_date", "company_id"],
        "stg.crm_company_snapshot": ["snapshot_date", "company_id"],
        "stg.crm_snapshot": ["snapshot_date"],
        "analytics.company_daily_activity": ["activity_date", "company_id"],
    }


# --- temp tables ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_NAMES)
def test_mssql_temp_tables_are_hash_tables(name: str) -> None:
    code = COMMENT.sub("", text(MSSQL, name))
    assert not BARE_TEMP_TABLE.findall(code), f"mssql/{name}.sql names a temp table without #"


def temp_table_columns(dialect: str, name: str) -> dict[str, list[str]]:
    """Temp tables a file fills from a query: CREATE TEMP TABLE ... AS (DuckDB), SELECT ... INTO #."""
    found: dict[str, list[str]] = {}
    for s in flat(parsed(dialect, name)):
        if isinstance(s, exp.Create) and s.kind != "VIEW" and isinstance(s.expression, exp.Query):
            found[s.this.name] = s.expression.named_selects
        elif isinstance(s, exp.Select) and s.args.get("into"):
            found[s.args["into"].this.name] = s.named_selects
    return found


@pytest.mark.parametrize("name", ALL_NAMES)
def test_mssql_temp_tables_have_the_duckdb_columns(name: str) -> None:
    assert temp_table_columns("mssql", name) == temp_table_columns("duckdb", name)


# --- the schema's version and its upgrades (contract section 8) -----------------------------------

# The schema each version of a dialect stands for: a digest of its schema.sql's statements
# (comments aside). A change to a schema.sql fails here until that dialect's version is raised
# and its digest recorded, so no database keeps an older schema under the version the app expects.
SCHEMA_DIGESTS = {
    "mssql": {1: "f6831b48d59283eb"},
    "duckdb": {1: "dd60e089280f5d0a", 2: "edb22aef2f823222"},  # 2: analytics and staged usage keyless
}
VERSION_RECORD = re.compile(
    r"^DELETE FROM analytics\.schema_version;\nINSERT INTO analytics\.schema_version \(version, applied_at\)"
    r" VALUES \((\d+), [^;\n]+\);\s*\Z",
    re.MULTILINE,
)


def schema_digest(dialect: str) -> str:
    return hashlib.sha256("\n;\n".join(statements(dialect, "schema")).encode()).hexdigest()[:16]


@pytest.mark.parametrize("dialect", ["mssql", "duckdb"])
def test_schema_sql_records_the_apps_schema_version_last(dialect: str) -> None:
    record = VERSION_RECORD.search(text(MSSQL if dialect == "mssql" else DUCKDB, "schema"))
    assert record, f"{dialect}/schema.sql must end by recording its version (DELETE, then INSERT)"
    assert int(record[1]) == SCHEMA_VERSIONS[dialect], (
        f"{dialect}/schema.sql records version {record[1]}, SCHEMA_VERSIONS has {SCHEMA_VERSIONS[dialect]}"
    )


@pytest.mark.parametrize("dialect", ["mssql", "duckdb"])
def test_a_changed_schema_has_a_new_version(dialect: str) -> None:
    digest, version = schema_digest(dialect), SCHEMA_VERSIONS[dialect]
    assert SCHEMA_DIGESTS[dialect].get(version) == digest, (
        f"sql/{dialect}/schema.sql is not the schema of version {version}: raise SCHEMA_VERSIONS[{dialect!r}]"
        f" (shared/adapters/warehouse_sql.py, and the number its schema.sql records), write the"
        f" change as an upgrade (docs/architecture.md) and record {{{version}: {digest!r}}} here"
    )


def test_mssql_schema_only_adds_each_object_once_and_never_drops() -> None:
    """Applied again and over any earlier version: every CREATE TABLE / INDEX and ALTER TABLE
    is the body of an IF on the line before it, schemas are created only when missing, and
    nothing is dropped (an upgrade keeps every row)."""
    lines = COMMENT.sub("", text(MSSQL, "schema")).splitlines()
    code = [line for line in lines if line.strip()]
    for before, line in itertools.pairwise(code):
        if re.match(r"\s*(CREATE|ALTER)\s+(TABLE|NONCLUSTERED INDEX|UNIQUE|CLUSTERED|INDEX)\b", line):
            assert before.lstrip().startswith("IF ") or before.strip() == ")", f"unguarded: {line.strip()}"
    alters = [line for line in code if re.match(r"\s*ALTER\s+TABLE\b", line)]
    assert all(" ADD " in f" {line} " or "ALTER COLUMN" in line for line in alters), alters
    assert not re.search(r"\bDROP\b|\bTRUNCATE\b", "\n".join(code), re.IGNORECASE)


def test_duckdb_schema_only_adds_each_object_once_and_never_drops() -> None:
    code = COMMENT.sub("", text(DUCKDB, "schema"))
    for create in re.findall(r"^CREATE\s+(?:TABLE|SCHEMA)\b[^\n(]*", code, re.MULTILINE):
        assert "IF NOT EXISTS" in create, create
    for add in re.findall(r"^ALTER\s+TABLE\b[^\n]*", code, re.MULTILINE):
        assert "ADD COLUMN IF NOT EXISTS" in add or "ALTER COLUMN" in add, add
    assert not re.search(r"\bDROP\b(?!\s+NOT\s+NULL)|\bTRUNCATE\b", code, re.IGNORECASE)


@pytest.mark.parametrize("dialect", ["mssql", "duckdb"])
def test_the_probe_reads_every_table_of_the_schema(dialect: str) -> None:
    read = {
        f"{t.db}.{t.name}" for s in parsed(dialect, "probe_tables") for t in s.find_all(exp.Table) if t.db
    }
    assert read == set(created_tables(dialect))
