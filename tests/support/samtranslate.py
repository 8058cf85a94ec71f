"""Run by the SAM CLI's own Python (.venv-tools): template.yaml through the SAM translator.

Prints the CloudFormation template SAM would deploy, as JSON. Local CodeUri/ContentUri are
replaced by S3 placeholders first, as `sam validate` does; no AWS call is made.
Usage: python samtranslate.py TEMPLATE [PARAMETERS_JSON]
"""

import json
import os
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class _NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


def main() -> None:
    with open(sys.argv[1]) as source:
        template = yaml_parse(source.read())
    for resource in template.get("Resources", {}).values():
        properties = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str):
                properties[key] = "s3://bucket/" + properties[key].strip("/")
    parameters = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    print(json.dumps(transform(template, parameters, _NoManagedPolicies())))


if __name__ == "__main__":
    main()
