"""What must be known when a deployment starts, is: no for-expression's source and no resource or
module condition depends on a value Azure knows only during the deployment.

Bicep refuses such a file (BCP178/BCP177/BCP182, its DeployTimeConstantValidator): a loop's
source, a variable-level loop's body and an `if` condition are evaluated before any resource
exists, so they may read parameters, literals, deployment functions (`resourceGroup()`,
`subscription()`...) and a resource's `id`, `name`, `type` and `apiVersion` (a module's `name`),
and nothing else: not a resource's `properties` (or `identity`, `location`, `sku`...), not a
module's `outputs`, not `reference()`, `list*()` or `getSecret()`, not a whole resource, and
neither directly nor through variables, however many. There is no Bicep compiler here, so this
test reads the files with the tree-sitter grammar and applies that rule itself; it is stricter
than nothing and looser than the compiler (it does not know resource types), so `az bicep build`
(CI's bicep job) stays the judge.

The scan works on the expression's tokens, not on the tree's shape: the grammar parses
`a && m.outputs.x` as `(a && m).outputs.x`, which a tree walk would misread.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tree_sitter import Node

from tests.infra.test_bicep import (
    BICEP_DIR,
    FUNCTION_APP_BICEP,
    REPO,
    _named,
    _parser,
    _text,
    _walk,
    bicep_files,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
OLD_FUNCTION_APP = FIXTURES / "functionapp_bcp178.bicep"

RESOURCE_READABLE = frozenset({"id", "name", "type", "apiVersion"})
MODULE_READABLE = frozenset({"name"})
RUNTIME_FUNCTION = re.compile(r"^(?:reference|list\w*|getSecret)$")


@dataclass
class _Declarations:
    variables: dict[str, Node] = field(default_factory=dict)  # name -> value expression
    resources: dict[str, Node] = field(default_factory=dict)  # name -> declaration (nested ones too)
    existing: set[str] = field(default_factory=set)
    modules: set[str] = field(default_factory=set)


def _declarations(root: Node) -> _Declarations:
    found = _Declarations()
    for node in _walk(root):
        if node.type == "variable_declaration":
            name, *_, value = _named(node)
            found.variables[_text(name)] = value
        elif node.type == "resource_declaration":
            name = _named(node)[0]
            found.resources[_text(name)] = node
            if any(not child.is_named and child.type == "existing" for child in node.children):
                found.existing.add(_text(name))
        elif node.type == "module_declaration":
            found.modules.add(_text(_named(node)[0]))
    return found


def _leaves(node: Node) -> list[Node]:
    return [leaf for leaf in _walk(node) if leaf.child_count == 0 and leaf.type != "comment"]


def _local_names(node: Node) -> set[str]:
    """Loop variables and lambda parameters declared inside an expression."""
    names = set()
    for inner in _walk(node):
        if inner.type == "for_statement":
            for child in inner.children:
                if child.type == "in":
                    break
                if child.type == "identifier":
                    names.add(_text(child))
                elif child.type == "for_loop_parameters":
                    names |= {_text(leaf) for leaf in _leaves(child) if leaf.is_named}
        elif inner.type == "lambda_expression":
            parameters = _named(inner)[:-1]
            names |= {_text(leaf) for p in parameters for leaf in _leaves(p) if leaf.is_named}
    return names


def _is_object_key(leaf: Node) -> bool:
    parent = leaf.parent
    return parent is not None and parent.type == "object_property" and _named(parent)[0] == leaf


def _closing_bracket(leaves: list[Node], start: int) -> int:
    depth = 0
    for index in range(start, len(leaves)):
        if leaves[index].type == "[":
            depth += 1
        elif leaves[index].type == "]":
            depth -= 1
            if depth == 0:
                return index
    return len(leaves) - 1


@dataclass
class _Scan:
    """What one expression reads directly: runtime values, and the variables it uses."""

    runtime: list[str]
    variables: list[str]


def _scan(expression: Node, declared: _Declarations, runtime_named: set[str]) -> _Scan:
    leaves = _leaves(expression)
    local = _local_names(expression)
    runtime: list[str] = []
    variables: list[str] = []
    for index, leaf in enumerate(leaves):
        text = _text(leaf)
        following = leaves[index + 1] if index + 1 < len(leaves) else None
        previous = leaves[index - 1] if index > 0 else None
        if (
            leaf.type in ("identifier", "property_identifier")
            and following is not None
            and following.type == "("
        ):
            if RUNTIME_FUNCTION.match(text):
                runtime.append(f"{text}()")
            continue
        if leaf.type != "identifier" or _is_object_key(leaf) or text in local:
            continue
        if previous is not None and previous.type in (".", "::", ".?"):
            continue  # a member, read from whatever precedes it
        if text in declared.variables:
            variables.append(text)
            continue
        is_module = text in declared.modules
        if not is_module and text not in declared.resources:
            continue  # a parameter, a function, a type
        readable = MODULE_READABLE if is_module else RESOURCE_READABLE
        cursor = index + 1
        path = text
        while cursor + 1 < len(leaves) and leaves[cursor].type == "::":  # parent::child
            path += "::" + _text(leaves[cursor + 1])
            cursor += 2
        while cursor < len(leaves) and leaves[cursor].type == "[":
            if cursor + 2 < len(leaves) and leaves[cursor + 1].type == "'":  # x['properties']
                break
            cursor = _closing_bracket(leaves, cursor) + 1  # a collection's element: x[i]
        member: str | None = None
        if cursor + 1 < len(leaves) and leaves[cursor].type in (".", ".?"):
            member = _text(leaves[cursor + 1])
        elif cursor + 2 < len(leaves) and leaves[cursor].type == "[" and leaves[cursor + 1].type == "'":
            member = _text(leaves[cursor + 2])
        called = cursor + 2 < len(leaves) and leaves[cursor + 2].type == "("
        if member is not None and called:
            continue  # sa.listKeys(), kv.getSecret(): the function check above reports it
        if member is None:
            runtime.append(f"{path} (the whole {'module' if is_module else 'resource'})")
        elif member not in readable:
            runtime.append(f"{path}.{member}")
        elif text in runtime_named:
            runtime.append(
                f"{path}.{member} (an existing resource whose name is known only during the deployment)"
            )
    return _Scan(runtime, variables)


def _runtime_named_existing(declared: _Declarations) -> set[str]:
    """Existing resources whose name (or scope or parent) is itself known only during the deployment:
    even their id and name are then runtime values."""
    runtime_named: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name in declared.existing - runtime_named:
            body = _named(declared.resources[name])[-1]
            if body.type != "object":
                continue
            for prop in _named(body):
                if prop.type != "object_property" or len(_named(prop)) < 2:
                    continue
                key, *_, value = _named(prop)
                if _text(key) in ("name", "scope", "parent") and _depends_on_runtime(
                    value, declared, runtime_named
                ):
                    runtime_named.add(name)
                    changed = True
                    break
    return runtime_named


def _depends_on_runtime(expression: Node, declared: _Declarations, runtime_named: set[str]) -> list[str]:
    """Each runtime value the expression reads, directly or through variables (transitively),
    as 'what (through var1 -> var2)'."""
    found: list[str] = []
    seen: set[str] = set()
    queue: list[tuple[Node, tuple[str, ...]]] = [(expression, ())]
    while queue:
        node, through = queue.pop(0)
        scan = _scan(node, declared, runtime_named)
        suffix = f" (through {' -> '.join(through)})" if through else ""
        found.extend(what + suffix for what in scan.runtime)
        for variable in scan.variables:
            if variable not in seen:
                seen.add(variable)
                queue.append((declared.variables[variable], (*through, variable)))
    return found


@dataclass(frozen=True)
class _Container:
    kind: str  # "for-expression source", "variable loop body", "condition"
    node: Node


def _containers(root: Node) -> Iterator[_Container]:
    for node in _walk(root):
        if node.type == "for_statement":
            children = node.children
            after_in = next(i for i, child in enumerate(children) if child.type == "in") + 1
            source = next(
                child for child in children[after_in:] if child.is_named and child.type != "comment"
            )
            yield _Container("for-expression source", source)
            if node.parent is not None and node.parent.type == "variable_declaration":
                after_colon = next(i for i, child in enumerate(children) if child.type == ":") + 1
                body = next(
                    child for child in children[after_colon:] if child.is_named and child.type != "comment"
                )
                yield _Container("variable loop body", body)
        elif node.type == "if_statement":
            yield _Container("condition", _named(node)[0])


def deploy_time_violations(source: bytes, label: str) -> list[str]:
    """'label:line: <kind> `<text>` needs <runtime value> (through <variables>)' for each one."""
    root = _parser().parse(source).root_node
    declared = _declarations(root)
    runtime_named = _runtime_named_existing(declared)
    problems = []
    for container in _containers(root):
        for what in _depends_on_runtime(container.node, declared, runtime_named):
            line = container.node.start_point[0] + 1
            text = " ".join(_text(container.node).split())[:60]
            problems.append(f"{label}:{line}: {container.kind} `{text}` needs {what}")
    return problems


def container_count(source: bytes) -> int:
    return sum(1 for _ in _containers(_parser().parse(source).root_node))


# ---------------------------------------------------------------------------- tests


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(BICEP_DIR)))
def test_loops_and_conditions_need_only_what_is_known_when_the_deployment_starts(path: Path) -> None:
    problems = deploy_time_violations(path.read_bytes(), str(path.relative_to(REPO)))
    assert not problems, "Bicep would refuse these (BCP178/BCP177):\n" + "\n".join(problems)


def test_the_rule_has_something_to_check_here() -> None:
    """Not vacuous: the deployment's loops and conditions are found."""
    assert sum(container_count(path.read_bytes()) for path in bicep_files()) >= 12


def test_the_rule_finds_the_defect_of_the_old_function_app() -> None:
    """The file as it was before issue 20: `for setting in items(appSettings)` where appSettings
    reads appInsights.properties.ConnectionString, an existing resource's property."""
    problems = deploy_time_violations(OLD_FUNCTION_APP.read_bytes(), "old functionapp.bicep")
    assert problems == [
        "old functionapp.bicep:220: for-expression source `items(appSettings)` needs "
        "appInsights.properties (through appSettings)"
    ]
    assert "items(appSettings)" not in FUNCTION_APP_BICEP.read_text()


HEADER = """
param flag bool = true
param names array = []
resource sa 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'st'
  resource blobs 'blobServices' = {
    name: 'default'
  }
}
resource kv 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: 'kv'
}
module m 'm.bicep' = {
  name: 'm'
}
resource late 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: m.outputs.accountName
}
"""

REFUSED = {
    "a resource's properties": "resource r 'a/b@1' = [for x in sa.properties.names: {}]",
    "a module's outputs": "resource r 'a/b@1' = [for x in m.outputs.names: {}]",
    "reference()": "resource r 'a/b@1' = [for x in reference(sa.id).names: {}]",
    "listKeys()": "resource r 'a/b@1' = [for x in listKeys(sa.id, '2023-05-01').keys: {}]",
    "an instance list call": "resource r 'a/b@1' = [for x in sa.listKeys().keys: {}]",
    "getSecret()": "resource r 'a/b@1' = if (!empty(kv.getSecret('s'))) {}",
    "an identity": "resource r 'a/b@1' = if (empty(sa.identity.principalId)) {}",
    "a nested resource's properties": "resource r 'a/b@1' = if (sa::blobs.properties.x) {}",
    "a string index": "resource r 'a/b@1' = [for x in sa['properties'].names: {}]",
    "a whole resource": "var all = [sa]\nresource r 'a/b@1' = [for x in all: {}]",
    "a condition after &&": "module n 'n.bicep' = if (flag && m.outputs.enabled) {\n  name: 'n'\n}",
    "three variables deep": (
        "var a = sa.properties.primaryEndpoints\nvar b = { e: a }\nvar c = items(b)\n"
        "resource r 'a/b@1' = [for x in c: {}]"
    ),
    "an existing resource named at runtime": "resource r 'a/b@1' = if (late.name == 'x') {}",
    "a variable loop's body": "var v = [for n in names: sa.properties.x]",
    "interpolation": "resource r 'a/b@1' = if ('${m.outputs.x}' == 'y') {}",
}

ACCEPTED = {
    "ids and names": "resource r 'a/b@1' = [for x in [sa.id, sa.name, kv.id, m.name]: {}]",
    "parameters and functions": "resource r 'a/b@1' = [for i in range(0, length(names)): {}]",
    "a condition on a parameter": "resource r 'a/b@1' = if (flag && !empty(names)) {}",
    "runtime values in a loop's body": "resource r 'a/b@1' = [for x in names: {\n  name: sa.properties.x\n}]",
    "a runtime value in a resource body": "resource r 'a/b@1' = {\n  properties: m.outputs.x\n}",
    "object keys that look like resources": "var o = { sa: 1, m: 2 }\nresource r 'a/b@1' = [for x in items(o): {}]",
    "a loop variable named like a resource": "output o array = [for sa in names: sa]",
    "an output loop's body": "output o array = [for (x, i) in names: m.outputs.y]",
}


@pytest.mark.parametrize(("what", "snippet"), REFUSED.items(), ids=list(REFUSED))
def test_the_rule_refuses(what: str, snippet: str) -> None:
    problems = deploy_time_violations((HEADER + snippet + "\n").encode(), "snippet")
    assert problems, f"{what} not found in:\n{snippet}"
    assert all(problem.startswith("snippet:") for problem in problems)


@pytest.mark.parametrize(("what", "snippet"), ACCEPTED.items(), ids=list(ACCEPTED))
def test_the_rule_accepts(what: str, snippet: str) -> None:
    assert deploy_time_violations((HEADER + snippet + "\n").encode(), "snippet") == []
