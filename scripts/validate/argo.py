"""Validates Argo CronWorkflow / WorkflowTemplate / Workflow files against Argo's
API models (the official `argo-workflows` SDK on PyPI, generated from Argo's
OpenAPI schema): unknown fields anywhere, wrong types and missing required fields
are errors. Usage: python argo.py FILE... ; exit 1 on the first invalid file."""

import json
import sys

import yaml
from argo_workflows.api_client import ApiClient
from argo_workflows.model.io_argoproj_workflow_v1alpha1_cron_workflow import (
    IoArgoprojWorkflowV1alpha1CronWorkflow,
)
from argo_workflows.model.io_argoproj_workflow_v1alpha1_workflow import IoArgoprojWorkflowV1alpha1Workflow
from argo_workflows.model.io_argoproj_workflow_v1alpha1_workflow_template import (
    IoArgoprojWorkflowV1alpha1WorkflowTemplate,
)
from argo_workflows.model_utils import ModelNormal

MODELS = {
    "CronWorkflow": IoArgoprojWorkflowV1alpha1CronWorkflow,
    "WorkflowTemplate": IoArgoprojWorkflowV1alpha1WorkflowTemplate,
    "Workflow": IoArgoprojWorkflowV1alpha1Workflow,
}


def unknown_fields(model, value, path):
    """Yields the JSON paths of keys the model does not define (the SDK's
    deserialiser checks types but drops unknown keys silently)."""
    if not (isinstance(model, type) and issubclass(model, ModelNormal)) or not isinstance(value, dict):
        return
    by_json_name = {json_name: attr for attr, json_name in model.attribute_map.items()}
    types = model.openapi_types
    types = types() if callable(types) else types
    for key, child in value.items():
        attr = by_json_name.get(key)
        if attr is None:
            yield f"{path}.{key}"
            continue
        for option in types[attr]:
            if isinstance(option, list):
                for i, item in enumerate(child if isinstance(child, list) else []):
                    for inner in option:
                        yield from unknown_fields(inner, item, f"{path}.{key}[{i}]")
            elif isinstance(option, dict):
                for k, item in (child.items() if isinstance(child, dict) else []):
                    for inner in option.values():
                        for inner_type in inner if isinstance(inner, tuple) else (inner,):
                            yield from unknown_fields(inner_type, item, f"{path}.{key}.{k}")
            else:
                yield from unknown_fields(option, child, f"{path}.{key}")


class Response:
    def __init__(self, document):
        self.data = json.dumps(document)


def main(files):
    client = ApiClient()
    failed = False
    for name in files:
        with open(name) as f:
            documents = [d for d in yaml.safe_load_all(f) if d is not None]
        for document in documents:
            kind = document.get("kind")
            model = MODELS.get(kind)
            where = f"{name}: {kind}/{document.get('metadata', {}).get('name')}"
            if model is None:
                print(f"INVALID {where}: not an Argo kind this checks ({', '.join(MODELS)})")
                failed = True
                continue
            problems = [f"unknown field {p}" for p in unknown_fields(model, document, "")]
            try:
                client.deserialize(Response(document), (model,), True)
            except Exception as error:  # the SDK raises several types
                problems.append(f"{type(error).__name__}: {error}")
            if problems:
                failed = True
                for problem in problems:
                    print(f"INVALID {where}: {problem}")
            else:
                print(f"valid {where}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
