"""The deployed template as CloudFormation would see it: SAM's translation, then parameters.

`translated()` runs the SAM translator that ships with the SAM CLI (.venv-tools); `Stack`
resolves parameter values (defaults, samconfig's overrides, then the caller's), evaluates
Conditions and Rules, and resolves the intrinsics the template uses, so a test reads exactly
the environment a deployed function would get.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from tests.support.tools import tool

ROOT = Path(__file__).resolve().parents[2]
NO_VALUE = object()


@cache
def translated() -> dict[str, Any]:
    """template.yaml through the SAM translator (AWS::Serverless-2016-10-31 expanded)."""
    python = Path(tool("sam")).parent / "python"
    result = subprocess.run(
        [str(python), str(ROOT / "tests/support/samtranslate.py"), str(ROOT / "template.yaml")],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0"},
    )
    return dict(json.loads(result.stdout))


def samconfig_overrides(environment: str = "default") -> dict[str, str]:
    """`parameter_overrides` of samconfig.toml's deploy command for `environment`."""
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    deploy = config.get(environment, {}).get("deploy", {}).get("parameters", {})
    overrides = deploy.get("parameter_overrides", "")
    if isinstance(overrides, list):
        overrides = " ".join(overrides)
    return dict(pair.split("=", 1) for pair in shlex.split(overrides))


class Stack:
    """The translated template with parameter values bound."""

    def __init__(self, values: dict[str, str], template: dict[str, Any] | None = None) -> None:
        self.template = template or translated()
        parameters = self.template.get("Parameters", {})
        unknown = set(values) - set(parameters)
        if unknown:
            raise KeyError(f"not template parameters: {sorted(unknown)}")
        self.parameters: dict[str, str] = {}
        for name, spec in parameters.items():
            if name in values:
                self.parameters[name] = str(values[name])
            elif "Default" in spec:
                self.parameters[name] = str(spec["Default"])
        missing = set(parameters) - set(self.parameters)
        if missing:
            raise KeyError(f"parameters without a value: {sorted(missing)}")
        self.conditions: dict[str, bool] = {}
        for name in self.template.get("Conditions", {}):
            self.condition(name)

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.resolve(self.template["Conditions"][name]))
        return self.conditions[name]

    def failed_rules(self) -> list[str]:
        """The AssertDescription of every Rules assertion these parameters break."""
        failed = []
        for rule in self.template.get("Rules", {}).values():
            if "RuleCondition" in rule and not self.resolve(rule["RuleCondition"]):
                continue
            for assertion in rule["Assertions"]:
                if not self.resolve(assertion["Assert"]):
                    failed.append(assertion.get("AssertDescription", json.dumps(assertion)))
        return failed

    def violations(self) -> list[str]:
        """Parameter values their own constraints refuse (AllowedValues, pattern, length)."""
        import re

        bad = []
        for name, spec in self.template.get("Parameters", {}).items():
            value = self.parameters[name]
            if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
                bad.append(name)
            if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
                bad.append(name)
            if "MinLength" in spec and len(value) < int(spec["MinLength"]):
                bad.append(name)
        return bad

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                if arg == "AWS::NoValue":
                    return NO_VALUE
                pseudo = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012",
                          "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com",
                          "AWS::StackName": "docent"}  # fmt: skip
                if arg in pseudo:
                    return pseudo[arg]
                if arg in self.parameters:
                    return self.parameters[arg]
                return f"<{arg}>"  # a resource's id: known only once deployed
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::If":
                name, yes, no = arg
                return self.resolve(yes if self.condition(name) else no)
            if key == "Fn::Equals":
                left, right = (self.resolve(a) for a in arg)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(a) for a in arg)
            if key == "Fn::Or":
                return any(self.resolve(a) for a in arg)
            if key == "Fn::Split":
                separator, text = arg
                return str(self.resolve(text)).split(separator)
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(index)]
            if key == "Fn::Join":
                separator, items = arg
                return separator.join(str(i) for i in self.resolve(items))
            if key == "Fn::Sub":
                text = arg if isinstance(arg, str) else arg[0]
                names = {} if isinstance(arg, str) else arg[1]
                import re

                def sub(match: re.Match[str]) -> str:
                    ref = match[1]
                    if ref in names:
                        return str(self.resolve(names[ref]))
                    return str(self.resolve({"Ref": ref}))

                return re.sub(r"\$\{([^}!]+)\}", sub, text)
            if key == "Fn::GetAtt":
                return f"<{arg if isinstance(arg, str) else '.'.join(arg)}>"
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        """Resources of `kind` that exist under these conditions, properties resolved."""
        found = {}
        for name, resource in self.template["Resources"].items():
            if resource["Type"] != kind:
                continue
            if "Condition" in resource and not self.condition(resource["Condition"]):
                continue
            found[name] = self.resolve(resource.get("Properties", {}))
        return found

    def environment(self, function: str) -> dict[str, str]:
        """The environment variables the deployed `function` gets."""
        properties = self.resources("AWS::Lambda::Function")[function]
        variables = (properties.get("Environment") or {}).get("Variables") or {}
        return {name: str(value) for name, value in variables.items()}
