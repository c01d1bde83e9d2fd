"""Both warehouses' churn rule, evaluated, against the declared rule over every combination of its
inputs (issue 19 item 5, issue 22: the three-valued rule).

The `is_churn_risk` expression is taken out of each dialect's build_days.sql with sqlglot: from
DuckDB's final SELECT (its `rule_flags` replaced by the `ruled` CTE's expression), and from the
T-SQL SELECT INTO #build_source. The T-SQL one is transpiled to DuckDB with two substitutions:
the parameters become the thresholds, and `CAST(... AS BIT)` becomes a cast to BOOLEAN, since
sqlglot keeps BIT and DuckDB's BIT is a bitstring (CAST(1 AS BIT) = '000...01'), while T-SQL's is
0/1/NULL. Both are evaluated in DuckDB over the grid and compared with the rule as declared once,
`ChurnRule.is_churn_risk` (shared/domain/churn_rule.py; tests/reference.py asks it too). The grid
is built from the declared thresholds: each side of each boundary.

The self-check breaks each file's text the ways a change could (the unknown clause dropped, a
threshold's comparison loosened) and requires the comparison to catch every one; nothing broken
is ever written to disk.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace

import duckdb
import pytest
import sqlglot
from sqlglot import exp

from shared.adapters.sql_files import SQL_ROOT
from shared.config import Settings
from shared.domain.churn_rule import ChurnRule
from shared.domain.days import ROLLING_DAYS

MIN_USERS, MAX_AGE = 10, 30
SETTINGS = replace(
    Settings.from_env({}), churn_min_rolling_users=MIN_USERS, churn_max_contact_age_days=MAX_AGE
)
RULE = SETTINGS.rules().churn
# Each side of each declared boundary: no activity, the user threshold, the contact age limit,
# never contacted; no unknown day, one, all of the window's.
ROLLING = (0, 1, RULE.min_rolling_users - 1, RULE.min_rolling_users, RULE.min_rolling_users + 1)
SINCE = (None, 0, RULE.max_contact_age_days - 1, RULE.max_contact_age_days, RULE.max_contact_age_days + 1)
UNKNOWN = (0, 1, ROLLING_DAYS)
GRID = list(itertools.product(ROLLING, SINCE, UNKNOWN))
PARAMETERS = {"churn_min_rolling_users": MIN_USERS, "churn_max_contact_age_days": MAX_AGE}

Row = tuple[int, int | None, int]


def _file(dialect: str) -> str:
    return (SQL_ROOT / dialect / "build_days.sql").read_text(encoding="utf-8")


def _aliased(tree: exp.Expr, name: str) -> list[exp.Alias]:
    return [a for a in tree.find_all(exp.Alias) if a.alias == name]


def _parameters(rule: exp.Expr) -> exp.Expr:
    """The rule with its parameters ($name in DuckDB, @name in T-SQL) set to the thresholds."""

    def substitute(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Placeholder | exp.Parameter):
            name = node.name or node.sql().lstrip("$@:")
            if name not in PARAMETERS:
                pytest.fail(f"the churn rule reads a parameter the test does not know: {node.sql()}")
            return exp.Literal.number(PARAMETERS[name])
        return node

    return rule.transform(substitute)


def duckdb_rule(text: str) -> str:
    """DuckDB's is_churn_risk, with `rule_flags` replaced by what the `ruled` CTE computes."""
    statements = [s for s in sqlglot.parse(text, read="duckdb") if s is not None]
    flags = [a for s in statements for a in _aliased(s, "rule_flags")]
    risk = [a for s in statements for a in _aliased(s, "is_churn_risk") if a.find(exp.Column)]
    assert len(flags) == 1, "build_days.sql (duckdb): one rule_flags expression expected in the ruled CTE"
    assert len(risk) == 1, "build_days.sql (duckdb): one computed is_churn_risk expression expected"
    rule = flags[0].this

    def inline(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Column) and node.name == "rule_flags":
            return exp.Paren(this=rule.copy())
        return node

    return _parameters(risk[0].this.copy().transform(inline)).sql("duckdb")


def mssql_rule(text: str) -> str:
    """T-SQL's is_churn_risk from the SELECT INTO #build_source, transpiled to DuckDB."""
    statements = [s for s in sqlglot.parse(text, read="tsql") if s is not None]
    sources = [
        sel
        for s in statements
        for sel in s.find_all(exp.Select)
        if sel.args.get("into") is not None and "build_source" in sel.args["into"].sql("tsql")
    ]
    assert len(sources) == 1, "build_days.sql (mssql): one SELECT ... INTO #build_source expected"
    risk = [a for a in sources[0].expressions if isinstance(a, exp.Alias) and a.alias == "is_churn_risk"]
    assert len(risk) == 1, "build_days.sql (mssql): one is_churn_risk in the #build_source SELECT"

    def boolean(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Cast) and node.to.is_type(exp.DataType.Type.BIT):
            return exp.Cast(this=node.this, to=exp.DataType.build("BOOLEAN"))
        return node

    rule = _parameters(risk[0].this.copy().transform(boolean))
    assert not any(c.to.is_type(exp.DataType.Type.BIT) for c in rule.find_all(exp.Cast))
    return rule.sql("duckdb")


def evaluate(rule: str) -> dict[Row, bool | None]:
    """The rule over the grid, in DuckDB, with the columns typed as the build's are."""
    values = ", ".join(f"({r}, {'NULL' if d is None else d}, {u})" for r, d, u in GRID)
    # The grid's own integers and the repository's own rule: no outside text.
    query = (
        "WITH grid AS (SELECT CAST(r AS BIGINT) AS rolling_7d_active_users,"  # noqa: S608
        " CAST(d AS INTEGER) AS days_since_last_contact, CAST(u AS INTEGER) AS usage_unknown_7d"
        f" FROM (VALUES {values}) AS v(r, d, u))"
        f" SELECT rolling_7d_active_users, days_since_last_contact, usage_unknown_7d, {rule} FROM grid"
    )
    with duckdb.connect() as con:
        rows = con.execute(query).fetchall()
    found: dict[Row, bool | None] = {}
    for r, d, u, value in rows:
        assert value is None or isinstance(value, bool), f"the rule gives {value!r}, not a boolean or NULL"
        found[(r, d, u)] = value
    return found


def mismatches(rule: str, declared: ChurnRule = RULE) -> list[str]:
    found = evaluate(rule)
    return [
        f"rolling {r}, days since contact {d}, unknown days {u}: the SQL gives {found.get((r, d, u))!r},"
        f" the declared rule {declared.is_churn_risk(r, d, u)!r}"
        for r, d, u in GRID
        if found.get((r, d, u), "missing") is not declared.is_churn_risk(r, d, u)
    ]


EXTRACT: dict[str, Callable[[str], str]] = {"duckdb": duckdb_rule, "mssql": mssql_rule}


def test_the_grid_holds_every_answer_of_the_declared_rule() -> None:
    answers = {RULE.is_churn_risk(r, d, u) for r, d, u in GRID}
    assert answers == {True, False, None}


@pytest.mark.parametrize("dialect", ["duckdb", "mssql"])
def test_the_churn_rule_equals_the_oracle_on_every_input(dialect: str) -> None:
    problems = mismatches(EXTRACT[dialect](_file(dialect)))
    assert problems == [], f"{dialect}/build_days.sql:\n" + "\n".join(problems)


# Ways a change could break each rule: (what the text says, what it is changed to).
BREAKS = {
    "duckdb": [
        ("WHEN rule_flags AND usage_unknown_7d > 0 THEN NULL", "WHEN FALSE THEN NULL"),  # unknown clause gone
        ("usage_unknown_7d > 0", "usage_unknown_7d > 1"),
        (
            "days_since_last_contact > $churn_max_contact_age_days",
            "days_since_last_contact >= $churn_max_contact_age_days",
        ),
        (
            "rolling_7d_active_users < $churn_min_rolling_users",
            "rolling_7d_active_users <= $churn_min_rolling_users",
        ),
        ("days_since_last_contact IS NULL OR", "FALSE OR"),
        ("(rolling_7d_active_users = 0\n", "(FALSE\n"),
    ],
    "mssql": [
        ("THEN CASE WHEN usage_unknown_7d > 0 THEN NULL ELSE 1 END", "THEN 1"),  # unknown clause gone
        ("usage_unknown_7d > 0", "usage_unknown_7d > 1"),
        (
            "days_since_last_contact > @churn_max_contact_age_days",
            "days_since_last_contact >= @churn_max_contact_age_days",
        ),
        (
            "rolling_7d_active_users < @churn_min_rolling_users",
            "rolling_7d_active_users <= @churn_min_rolling_users",
        ),
        ("(days_since_last_contact IS NULL\n", "(0 = 1\n"),
        ("CASE WHEN rolling_7d_active_users = 0\n", "CASE WHEN 0 = 1\n"),
    ],
}


@pytest.mark.parametrize("dialect", ["duckdb", "mssql"])
def test_the_comparison_catches_a_broken_rule(dialect: str) -> None:
    """Self-check: each break, applied to the file's text in memory, is caught."""
    text = _file(dialect)
    for before, after in BREAKS[dialect]:
        assert text.count(before) >= 1, f"{dialect}/build_days.sql no longer says {before!r}: update BREAKS"
        broken = text.replace(before, after)
        assert mismatches(EXTRACT[dialect](broken)), f"{dialect}: breaking {before!r} went unnoticed"


class _NeverCannotTell(ChurnRule):
    """The declared rule without its third value."""

    def is_churn_risk(self, rolling_users: int, days_since_contact: int | None, unknown_days: int) -> bool:
        return self.flags(rolling_users, days_since_contact)


class _NeverContactedIsRecent(ChurnRule):
    def out_of_touch(self, days_since_contact: int | None) -> bool:
        return days_since_contact is not None and days_since_contact > self.max_contact_age_days


# The declared rule changed the ways an edit of it could: the unchanged SQL must then disagree.
OTHER_RULES = [
    ChurnRule(MIN_USERS + 1, MAX_AGE),
    ChurnRule(MIN_USERS - 1, MAX_AGE),
    ChurnRule(MIN_USERS, MAX_AGE + 1),
    ChurnRule(MIN_USERS, MAX_AGE - 1),
    _NeverCannotTell(MIN_USERS, MAX_AGE),
    _NeverContactedIsRecent(MIN_USERS, MAX_AGE),
]


@pytest.mark.parametrize("dialect", ["duckdb", "mssql"])
def test_the_comparison_catches_a_changed_declared_rule(dialect: str) -> None:
    """Self-check from the other side: the SQL as it is, held to a declared rule changed."""
    rule = EXTRACT[dialect](_file(dialect))
    for other in OTHER_RULES:
        assert mismatches(rule, other), f"{dialect}: the declared rule changed to {other} went unnoticed"
