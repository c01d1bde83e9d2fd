"""The Bicep under infra/bicep: it parses, and it agrees with the code it deploys.

Parsing uses tree-sitter-bicep, a syntax-only grammar: these tests need no Bicep compiler and no
Azure, and they do not replace `az bicep build` or a what-if deployment.

`bicep_app_setting_names()` (and `bicep_app_settings()`) are meant for reuse by other tests.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import tree_sitter_bicep
from tree_sitter import Language, Node, Parser, Tree

from shared.config import Settings
from shared.domain import blob_events, names

REPO = Path(__file__).resolve().parents[2]
BICEP_DIR = REPO / "infra" / "bicep"
MAIN_BICEP = BICEP_DIR / "main.bicep"
MODULES = BICEP_DIR / "modules"
FUNCTION_APP_BICEP = MODULES / "functionapp.bicep"
DEV_PARAMETERS = BICEP_DIR / "main.parameters.dev.json"
APP_SETTINGS_RESOURCE = "appSettings"

EXPECTED_MODULES = (
    "alert-rules.bicep",
    "eventgrid-topic.bicep",
    "eventgrid.bicep",
    "functionapp.bicep",
    "keyvault.bicep",
    "monitoring.bicep",
    "roles.bicep",
    "servicebus.bicep",
    "sql.bicep",
    "storage.bicep",
)

# Parameters that carry secrets: they must be @secure() and have no default but ''.
SECURE_PARAMS = {
    MAIN_BICEP: ("usageApiKey", "alertWebhookUrl"),
    MODULES / "keyvault.bicep": ("usageApiKey", "alertWebhookUrl"),
}
# A parameter whose name ends like this must be @secure() wherever it is declared.
SECRET_PARAM_NAME = re.compile(
    r"^(?:key|password|secret|token)$|(?:Key|Password|Secret|Token|ConnectionString|WebhookUrl)$"
)
FORBIDDEN_TEXT = (
    "AccountKey=",
    "SharedAccessKey=",
    "SharedAccessSignature",
    "listKeys(",
    "listConnectionStrings(",
    "administratorLoginPassword",
)
_ESCAPES = {"\\'": "'", "\\\\": "\\", "\\n": "\n", "\\r": "\r", "\\t": "\t", "\\$": "$"}


# ---------------------------------------------------------------------------- parsing helpers


def bicep_files() -> list[Path]:
    return sorted(BICEP_DIR.rglob("*.bicep"))


@cache
def _parser() -> Parser:
    return Parser(Language(tree_sitter_bicep.language()))


@cache
def parse(path: Path) -> Tree:
    return _parser().parse(path.read_bytes())


def _walk(node: Node) -> Iterator[Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def _text(node: Node) -> str:
    return (node.text or b"").decode()


def _named(node: Node) -> list[Node]:
    """Named children without comments (the grammar lets comments appear anywhere)."""
    return [child for child in node.named_children if child.type != "comment"]


def syntax_problems(tree: Tree) -> list[str]:
    """Every ERROR and MISSING node, as 'line:column' (1-based) with what is there."""
    problems = []
    for node in _walk(tree.root_node):
        if node.type == "ERROR" or node.is_missing:
            kind = f"MISSING {node.type}" if node.is_missing else "ERROR"
            line, column = node.start_point
            problems.append(f"{line + 1}:{column + 1} {kind} at {_text(node)[:60]!r}")
    return problems


def string_value(node: Node) -> str | None:
    """The value of a string literal; None for a string with ${...} in it, or a non-string."""
    if node.type != "string":
        return None
    parts = []
    for child in node.named_children:
        if child.type == "interpolation":
            return None
        if child.type == "string_content":
            parts.append(_text(child))
        elif child.type == "escape_sequence":
            parts.append(_ESCAPES.get(_text(child), _text(child)))
    return "".join(parts)


def string_literals(path: Path) -> set[str]:
    """Every plain string literal in a Bicep file (comments excluded)."""
    return {
        value
        for node in _walk(parse(path).root_node)
        if node.type == "string" and (value := string_value(node)) is not None
    }


def _object_entries(obj: Node) -> dict[str, Node]:
    """The properties of an object literal: key -> value node."""
    assert obj.type == "object", f"expected an object literal, got {obj.type}"
    entries = {}
    for prop in _named(obj):
        if prop.type != "object_property" or len(_named(prop)) < 2:
            continue  # a nested resource declaration is an object_property too
        key_node, *_, value_node = _named(prop)
        key = string_value(key_node) if key_node.type == "string" else _text(key_node)
        assert key is not None, f"computed object key {_text(key_node)!r}"
        entries[key] = value_node
    return entries


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: Node | None
    decorators: frozenset[str]
    arguments: dict[str, str]  # decorator name -> its argument's text, e.g. {"minValue": "40"}

    @property
    def default_value(self) -> str | int | bool | None:
        """The default as a Python value, when it is a literal; else None."""
        if self.default is None:
            return None
        if self.default.type == "string":
            return string_value(self.default)
        if self.default.type == "number":
            return int(_text(self.default))
        if self.default.type == "boolean":
            return _text(self.default) == "true"
        return None


def _decorator_names(declaration: Node) -> frozenset[str]:
    previous = declaration.prev_named_sibling
    while previous is not None and previous.type == "comment":
        previous = previous.prev_named_sibling
    if previous is None or previous.type != "decorators":
        return frozenset()
    found = set()
    for decorator in _named(previous):
        call = _named(decorator)[0]
        function = _named(call)[0] if call.type == "call_expression" else call
        found.add(_text(function).removeprefix("sys."))
    return frozenset(found)


def _decorator_arguments(declaration: Node) -> dict[str, str]:
    previous = declaration.prev_named_sibling
    while previous is not None and previous.type == "comment":
        previous = previous.prev_named_sibling
    if previous is None or previous.type != "decorators":
        return {}
    found = {}
    for decorator in _named(previous):
        call = _named(decorator)[0]
        if call.type == "call_expression":
            function, *args = _named(call)
            found[_text(function).removeprefix("sys.")] = _text(args[0]).strip("()") if args else ""
    return found


def bicep_params(path: Path) -> dict[str, Param]:
    params = {}
    for node in _named(parse(path).root_node):
        if node.type != "parameter_declaration":
            continue
        name_node, type_node, *rest = _named(node)
        params[_text(name_node)] = Param(
            name=_text(name_node),
            type=_text(type_node),
            default=rest[-1] if rest else None,
            decorators=_decorator_names(node),
            arguments=_decorator_arguments(node),
        )
    return params


def _variable(path: Path, name: str) -> Node:
    for node in _named(parse(path).root_node):
        if node.type == "variable_declaration":
            name_node, *_, value = _named(node)
            if _text(name_node) == name:
                return value
    raise LookupError(f"no variable {name!r} in {path}")


def _resource(path: Path, name: str) -> tuple[str, Node]:
    """A top-level resource declaration: (its type string, its body object)."""
    for node in _named(parse(path).root_node):
        if node.type == "resource_declaration":
            name_node, type_node, *_, value = _named(node)
            if _text(name_node) == name:
                if value.type == "if_statement":
                    value = _named(value)[-1]
                type_string = string_value(type_node)
                assert type_string is not None and value.type == "object", f"{name} in {path}"
                return type_string, value
    raise LookupError(f"no resource {name!r} in {path}")


def bicep_app_settings(path: Path = FUNCTION_APP_BICEP) -> dict[str, str]:
    """The Function App's app settings: name -> the Bicep expression of its value (source text).

    They are the `properties` of the Microsoft.Web/sites/config 'appsettings' child resource."""
    _, body = _resource(path, APP_SETTINGS_RESOURCE)
    return {key: _text(value) for key, value in _object_entries(_object_entries(body)["properties"]).items()}


def bicep_app_setting_names() -> set[str]:
    """The names of the Function App's app settings declared in infra/bicep/modules/functionapp.bicep."""
    return set(bicep_app_settings())


# ---------------------------------------------------------------------------- tests


def test_the_bicep_files_are_there() -> None:
    assert MAIN_BICEP.is_file()
    assert sorted(p.name for p in MODULES.glob("*.bicep")) == sorted(EXPECTED_MODULES)
    for module in EXPECTED_MODULES:
        assert f"'modules/{module}'" in MAIN_BICEP.read_text(), f"main.bicep does not use {module}"


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(BICEP_DIR)))
def test_bicep_file_parses(path: Path) -> None:
    tree = parse(path)
    problems = syntax_problems(tree)
    assert not problems, f"{path.relative_to(REPO)} has syntax errors:\n" + "\n".join(
        f"  {path.relative_to(REPO)}:{problem}" for problem in problems
    )
    assert tree.root_node.type == "infrastructure"
    assert _named(tree.root_node), f"{path} declares nothing"


def test_the_contract_names_are_in_the_bicep() -> None:
    everywhere = set().union(*(string_literals(path) for path in bicep_files()))
    for name in (*names.QUEUES, *names.CONTAINERS, names.LEDGER_TABLE):
        assert name in everywhere, f"{name!r} is not a string in any Bicep file"

    queues = string_literals(MODULES / "servicebus.bicep")
    assert set(names.QUEUES) <= queues, f"queues missing from servicebus.bicep: {set(names.QUEUES) - queues}"
    storage = string_literals(MODULES / "storage.bicep")
    for name in (*names.CONTAINERS, names.LEDGER_TABLE):
        assert name in storage, f"{name!r} missing from storage.bicep"


def test_the_health_probe_container_is_created_and_watched_by_no_subscription() -> None:
    """GET /api/health writes a probe blob there: it must exist on Azure and start nothing (issue 20)."""
    storage = MODULES / "storage.bicep"
    assert string_value(_variable(storage, "healthContainerName")) == names.HEALTH_CONTAINER
    assert "name: healthContainerName" in storage.read_text()
    probe = f"{names.HEALTH_BLOB_PREFIX}probe-0123.txt"
    assert not blob_events.wanted(names.HEALTH_CONTAINER, probe)
    subjects = {s for s in string_literals(MODULES / "eventgrid.bicep") if "/containers/" in s}
    assert subjects and all(f"/containers/{names.HEALTH_CONTAINER}/" not in s for s in subjects)
    assert names.HEALTH_CONTAINER not in names.CONTAINERS  # the contract's containers stay as they are


def test_dead_letters_forward_to_alerts_except_from_alerts() -> None:
    path = MODULES / "servicebus.bicep"
    resources = {
        _text(_named(node)[0]): _text(node)
        for node in _named(parse(path).root_node)
        if node.type == "resource_declaration"
    }
    assert "forwardDeadLetteredMessagesTo" not in resources["alerts"]  # terminal, no loop
    assert "forwardDeadLetteredMessagesTo: alerts.name" in resources["workQueues"]
    assert string_value(_variable(path, "alertsQueueName")) == names.ALERTS_QUEUE
    work_queues = {string_value(item) for item in _named(_variable(path, "workQueueNames"))}
    assert work_queues == set(names.QUEUES) - {names.ALERTS_QUEUE}
    assert bicep_params(path)["maxDeliveryCount"].default_value == Settings.from_env({}).max_delivery_count


def test_the_event_grid_filter_is_the_one_the_loaders_expect() -> None:
    path = MODULES / "eventgrid.bicep"
    literals = string_literals(path)
    containers = "/blobServices/default/containers/"
    assert f"{containers}{names.RAW_CONTAINER}/blobs/usage/" in literals
    assert f"/{names.MANIFEST_NAME}" in literals
    assert f"{containers}{names.CRM_CONTAINER}/blobs/" in literals
    assert blob_events.BLOB_CREATED in literals
    assert "EventGridSchema" in literals
    finishing = {string_value(item) for item in _named(_variable(path, "finishingApis"))}
    assert finishing == set(blob_events.FINISHING_APIS)
    assert bicep_params(path)["ingestQueueName"].default_value == names.INGEST_QUEUE


def test_the_app_settings_name_what_the_code_reads() -> None:
    settings = bicep_app_setting_names()
    required = {
        "AzureWebJobsStorage__accountName",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "ServiceBusConnection__fullyQualifiedNamespace",
        "DATA_STORAGE_ACCOUNT_NAME",
        "SQL_SERVER",
        "SQL_DATABASE",
        "FETCH_SCHEDULE",
        "USAGE_API_BASE_URL",
        "USAGE_API_KEY",
        "ALERT_WEBHOOK_URL",
    }
    assert required <= settings, f"missing app settings: {sorted(required - settings)}"
    # The resource is what the site actually gets: its 'appsettings' config, and nothing in siteConfig.
    resource_type, body = _resource(FUNCTION_APP_BICEP, APP_SETTINGS_RESOURCE)
    entries = _object_entries(body)
    assert resource_type.startswith("Microsoft.Web/sites/config@"), resource_type
    assert string_value(entries["name"]) == "appsettings" and _text(entries["parent"]) == "site"
    _, site = _resource(FUNCTION_APP_BICEP, "site")
    site_config = _object_entries(_object_entries(_object_entries(site)["properties"])["siteConfig"])
    assert "appSettings" not in site_config  # one place only: the config resource replaces the set


def test_app_setting_defaults_match_shared_config() -> None:
    defaults = Settings.from_env({})
    module_params = bicep_params(FUNCTION_APP_BICEP)
    main_params = bicep_params(MAIN_BICEP)
    compared = []
    for setting, expression in bicep_app_settings().items():
        match = re.fullmatch(r"(?:string\()?(\w+)\)?", expression)
        param = module_params.get(match.group(1)) if match else None
        if param is None or param.default is None:
            continue  # not a parameter, or one without a default (a name from another module)
        # main.bicep passes the same parameter on; its default must not drift from the module's.
        if param.name in main_params:
            assert main_params[param.name].default_value == param.default_value, param.name
        field = setting.lower()
        if hasattr(defaults, field):
            expected = getattr(defaults, field)
            actual = param.default_value
            if isinstance(expected, (int, float)):
                assert actual is not None and float(actual) == float(expected), (setting, actual, expected)
            else:
                assert actual == expected, (setting, actual, expected)
            compared.append(setting)
    assert len(compared) >= 12, f"compared only {compared}"
    assert module_params["fetchSchedule"].default_value == "0 30 2 * * *"


def test_secrets_are_key_vault_references() -> None:
    settings = bicep_app_settings()
    for setting in ("USAGE_API_KEY", "ALERT_WEBHOOK_URL"):
        assert settings[setting].startswith("'@Microsoft.KeyVault(SecretUri="), (setting, settings[setting])


def test_no_secret_literals() -> None:
    for path in [*bicep_files(), DEV_PARAMETERS]:
        text = path.read_text()
        for forbidden in FORBIDDEN_TEXT:
            assert forbidden.lower() not in text.lower(), f"{path.relative_to(REPO)} contains {forbidden!r}"

    for path in bicep_files():
        for node in _walk(parse(path).root_node):
            if node.type == "object_property" and len(_named(node)) >= 2:
                key, *_, value = _named(node)
                if re.search("password", _text(key), re.IGNORECASE):
                    assert value.type != "string", f"{path.name}: literal value for {_text(key)}"
        for param in bicep_params(path).values():
            if SECRET_PARAM_NAME.search(param.name):
                assert "secure" in param.decorators, f"{path.name}: param {param.name} is not @secure()"
                assert param.default_value in (None, ""), f"{path.name}: param {param.name} has a default"

    for path, secure in SECURE_PARAMS.items():
        params = bicep_params(path)
        for name in secure:
            assert name in params, f"{path.name} has no param {name}"
            assert "secure" in params[name].decorators, f"{path.name}: {name} is not @secure()"
            assert params[name].default_value in (None, ""), f"{path.name}: {name} has a default"


def test_dev_parameters_fit_main_and_hold_no_secrets() -> None:
    document = json.loads(DEV_PARAMETERS.read_text())
    given = document["parameters"]
    params = bicep_params(MAIN_BICEP)
    assert set(given) <= set(params), f"unknown parameters: {sorted(set(given) - set(params))}"
    required = {name for name, param in params.items() if param.default is None}
    assert required <= set(given), f"required parameters missing: {sorted(required - set(given))}"
    for name, param in params.items():
        if "secure" in param.decorators:
            assert name not in given, f"secure parameter {name} must not be in a parameters file"
    assert "password" not in json.dumps(given).lower()


def _bounds(param: Param) -> tuple[int | None, int | None]:
    low, high = param.arguments.get("minValue"), param.arguments.get("maxValue")
    return (int(low) if low else None, int(high) if high else None)


def _within(value: int, bounds: tuple[int | None, int | None]) -> bool:
    low, high = bounds
    return (low is None or value >= low) and (high is None or value <= high)


def test_every_default_and_dev_value_is_within_its_declared_range() -> None:
    for path in bicep_files():
        for param in bicep_params(path).values():
            if param.type == "int" and isinstance(param.default_value, int):
                assert _within(param.default_value, _bounds(param)), f"{path.name}: {param.name}"
    given = json.loads(DEV_PARAMETERS.read_text())["parameters"]
    for name, param in bicep_params(MAIN_BICEP).items():
        if param.type == "int" and name in given:
            assert _within(int(given[name]["value"]), _bounds(param)), f"dev parameters: {name}"


def test_the_instance_cap_is_never_below_what_flex_consumption_accepts() -> None:
    """Flex Consumption refuses a maximumInstanceCount below 40 in most regions."""
    for path in (MAIN_BICEP, FUNCTION_APP_BICEP):
        low, _ = _bounds(bicep_params(path)["maximumInstanceCount"])
        assert low is not None and low >= 40, path.name


def _iso_duration_minutes(text: str) -> float:
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", text)
    assert match, f"not an ISO 8601 duration: {text}"
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return days * 1440 + hours * 60 + minutes + seconds / 60


def test_duplicate_detection_outlasts_event_grid_retries() -> None:
    """Event Grid redelivers an event with the same id for up to its time to live; Service Bus
    drops a repeated message id only within its duplicate-detection window."""
    window = string_value(_variable(MODULES / "servicebus.bicep", "duplicateDetectionWindow"))
    ttl = bicep_params(MODULES / "eventgrid.bicep")["eventTimeToLiveInMinutes"]
    assert window is not None and isinstance(ttl.default_value, int)
    assert _iso_duration_minutes(window) >= ttl.default_value
    assert _iso_duration_minutes(window) <= 7 * 1440  # the longest window Service Bus allows


# --------------------------------------------------------------------------- azd up

AZD_PARAMETERS = BICEP_DIR / "main.parameters.json"
AZURE_YAML = REPO / "azure.yaml"


def test_azure_yaml_provisions_this_bicep_and_publishes_this_app() -> None:
    import yaml

    spec = yaml.safe_load(AZURE_YAML.read_text())
    infra = spec["infra"]
    assert infra["provider"] == "bicep" and (REPO / infra["path"] / f"{infra['module']}.bicep") == MAIN_BICEP
    [(service, config)] = spec["services"].items()
    assert (config["project"], config["language"], config["host"]) == (".", "python", "function")
    # azd publishes to the resource tagged with the service's name.
    assert f"'azd-service-name': '{service}'" in FUNCTION_APP_BICEP.read_text()
    hooks = spec["hooks"]
    assert set(hooks) == {"postprovision", "postdeploy"}  # postdeploy: the health check ends `azd up`
    for name, hook_spec in hooks.items():
        hook = REPO / hook_spec["posix"]["run"]
        assert hook == REPO / "infra" / "hooks" / f"{name}.sh", hook
        assert hook.is_file() and os.access(hook, os.X_OK)
        assert hook_spec["posix"]["shell"] == "sh" and hook_spec["posix"]["continueOnError"] is False
        # docs/deploy.md promises Git Bash on Windows: without a windows block azd runs nothing there.
        assert hook_spec["windows"] == hook_spec["posix"], name


def test_the_azd_parameters_fit_main_bicep() -> None:
    given = json.loads(AZD_PARAMETERS.read_text())["parameters"]
    params = bicep_params(MAIN_BICEP)
    assert set(given) <= set(params), sorted(set(given) - set(params))
    required = {name for name, param in params.items() if param.default is None}
    assert required <= set(given), sorted(required - set(given))
    text = json.dumps(given)
    for placeholder in re.findall(r"\$\{([^}]*)\}", text):
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*(=[^${}]*)?", placeholder), placeholder
    assert (
        given["operatorPrincipalId"]["value"] == "${AZURE_PRINCIPAL_ID}"
    )  # the deployer gets the operator roles


# What azd itself puts in the environment of a hook, besides main.bicep's outputs.
AZD_VARIABLES = {"AZURE_ENV_NAME", "AZURE_LOCATION", "AZURE_SUBSCRIPTION_ID"}


def main_bicep_outputs() -> set[str]:
    return {
        _text(_named(node)[0])
        for node in _named(parse(MAIN_BICEP).root_node)
        if node.type == "output_declaration"
    }


@pytest.mark.parametrize("hook", sorted((REPO / "infra" / "hooks").glob("*.sh")), ids=lambda p: p.name)
def test_the_hooks_read_only_outputs_main_bicep_gives(hook: Path) -> None:
    needed = set(re.findall(r"\$\{([A-Z_]+):\?", hook.read_text()))
    assert needed and needed <= main_bicep_outputs() | AZD_VARIABLES, sorted(
        needed - main_bicep_outputs() - AZD_VARIABLES
    )


def _top_level(path: Path, kind: str) -> list[Node]:
    return [node for node in _named(parse(path).root_node) if node.type == kind]


def test_each_environment_has_its_own_resource_group() -> None:
    """azd's convention: main.bicep deploys at subscription scope, creates rg-<environmentName>
    tagged azd-env-name, and every module deploys into it; so `azd down`, which deletes the
    groups the deployment made, removes one environment and nothing else."""
    text = MAIN_BICEP.read_text()
    assert re.search(r"^targetScope = 'subscription'$", text, re.MULTILINE)
    assert "resourceGroup()" not in text  # no such scope at subscription level
    groups = [
        node
        for node in _top_level(MAIN_BICEP, "resource_declaration")
        if (string_value(_named(node)[1]) or "").startswith("Microsoft.Resources/resourceGroups@")
    ]
    assert len(groups) == 1
    group_name = _text(_named(groups[0])[0])
    body = _object_entries(_named(groups[0])[-1])
    assert _text(body["name"]) == "'rg-${environmentName}'"
    assert _text(body["tags"]) == "resourceTags"
    assert re.search(r"var resourceTags = union\(tags, \{ 'azd-env-name': environmentName \}\)", text)
    modules = _top_level(MAIN_BICEP, "module_declaration")
    assert len(modules) == len(EXPECTED_MODULES)
    for module in modules:
        entries = _object_entries(_named(module)[-1])
        assert "scope" in entries and _text(entries["scope"]) == group_name, _text(_named(module)[0])
        if "tags" in _object_entries(entries["params"]):
            assert _text(_object_entries(entries["params"])["tags"]) == "resourceTags"
    # The token of globally unique names derives from the group, so each environment has its own.
    assert "uniqueString(rg.id," in text
    given = json.loads(AZD_PARAMETERS.read_text())["parameters"]
    assert given["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert given["location"]["value"] == "${AZURE_LOCATION}"
    assert {"AZURE_RESOURCE_GROUP", "AZURE_TENANT_ID", "AZURE_FUNCTION_APP_HOST_NAME"} <= main_bicep_outputs()


def test_the_modules_deploy_at_resource_group_scope() -> None:
    for path in MODULES.glob("*.bicep"):
        scope = re.search(r"^targetScope = '(\w+)'", path.read_text(), re.MULTILINE)
        assert scope is None or scope.group(1) == "resourceGroup", path.name


def test_operator_roles_are_granted_only_when_an_operator_is_named() -> None:
    roles = (MODULES / "roles.bicep").read_text()
    operator_resources = re.findall(
        r"resource operator\w+ '[^']+' = (\[\n  for [^\n]+|if \(withOperator\))", roles
    )
    assert len(operator_resources) == 3
    assert all("withOperator" in r for r in operator_resources)
    assert "b86a8fe4-44ce-4948-aee5-eccb2c155cd7" in roles  # Key Vault Secrets Officer: set the secrets


def test_dead_letters_and_function_failures_raise_azure_monitor_alerts() -> None:
    rules = (MODULES / "alert-rules.bicep").read_text()
    assert "metricName: 'DeadletteredMessages'" in rules and "threshold: 0" in rules
    # Dead letters of the other queues are forwarded to alerts: a queue that never empties is
    # what an app that does not run looks like.
    assert "metricName: 'ActiveMessages'" in rules and "timeAggregation: 'Minimum'" in rules
    assert "Microsoft.Insights/scheduledQueryRules" in rules and "success == false" in rules
    assert "alertEmail: alertEmail" in MAIN_BICEP.read_text()


def test_logs_leave_with_opentelemetry_so_the_log_context_arrives_as_dimensions() -> None:
    assert json.loads((REPO / "host.json").read_text())["telemetryMode"] == "OpenTelemetry"
    assert bicep_app_settings()["PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"] == "'true'"
    assert "azure-monitor-opentelemetry" in (REPO / "requirements.txt").read_text()


def test_int_settings_have_the_ranges_the_app_refuses_outside_of() -> None:
    """A value Bicep accepts must be one the app starts with: the same range in both places."""
    fields = {f.metadata["env"]: f for f in dataclasses.fields(Settings)}
    checked = []
    for path in (MAIN_BICEP, FUNCTION_APP_BICEP):
        params = bicep_params(FUNCTION_APP_BICEP)
        for setting, expression in bicep_app_settings().items():
            match = re.fullmatch(r"string\((\w+)\)", expression)
            param = params.get(match.group(1)) if match else None
            if param is None or param.type != "int" or setting not in fields:
                continue
            declared = bicep_params(path).get(param.name) or param
            field = fields[setting]
            assert _bounds(declared) == (field.metadata["low"], field.metadata["high"]), (path.name, setting)
            checked.append(setting)
    assert len(set(checked)) >= 7, checked
