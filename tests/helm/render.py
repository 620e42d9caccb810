"""Render the chart with real Helm and validate every object; called by tests/helm_chart.rs.

    python render.py < request.json > result.json

request: {"chart": dir, "values": {...}, "release": name, "namespace": ns, "kubeVersion": "1.33.0"}

result (JSON):
  helm        Helm SDK version doing the work (helm-python-sdk bundles Helm's Go engine)
  schemaError values rejected by the chart's values.schema.json (then nothing is rendered), or null
  renderError template failure (`fail`, `required`, syntax), or null
  lint        `helm lint --strict --kube-version v<kubeVersion>` with the same values:
              {"messages": [{"severity", "path", "error"}], "errors": [...]}
  notes       the rendered NOTES.txt
  objects     [{"template", "object"}] every rendered object (YAML documents, empty ones dropped)
  crds        {file name: text} the chart's crds/ directory as Helm loads it
  validation  [{"template", "kind", "name", "schema", "errors": [...]}], one per object:
              built-in kinds against kubernetes-validate's strict JSON schemas for Kubernetes
              <kubeVersion> (generated from its OpenAPI: types, required fields, enums, and no unknown
              fields anywhere); ClbClassParameters against the openAPIV3Schema of the chart's own
              CRD (types, patterns, enums, bounds, unknown fields refused as a structural schema
              would prune them; CEL x-kubernetes-validations not evaluated); any other kind gets
              schema "none" and is left to the Rust test.
"""

import json
import os
import sys

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml


def crd_schema(crd: dict, version: str) -> dict:
    """The CRD's openAPIV3Schema as a strict JSON Schema."""
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            schema = json.loads(json.dumps(v["schema"]["openAPIV3Schema"]))
            break
    else:
        raise KeyError(version)

    def strict(node):
        if not isinstance(node, dict):
            return
        if node.pop("nullable", False) and "type" in node:
            node["type"] = [node["type"], "null"]
        for key in ("x-kubernetes-validations",):
            node.pop(key, None)
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for child in node.get("properties", {}).values():
            strict(child)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                strict(node[key])

    strict(schema)
    schema.setdefault("properties", {}).update(
        {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
        }
    )
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
    return schema


def main() -> None:
    req = json.load(sys.stdin)
    chart_dir, values = req["chart"], req.get("values") or {}
    kube_version = req.get("kubeVersion", "1.33.0")
    out = {
        "helm": helm.helm_sdk_version(),
        "schemaError": None,
        "renderError": None,
        "lint": None,
        "notes": "",
        "objects": [],
        "crds": {},
        "validation": [],
    }
    with helm.Chart.load(chart_dir) as chart:
        try:
            chart.validate_schema(values)
        except helm.HelmError as e:
            out["schemaError"] = str(e)
            json.dump(out, sys.stdout)
            return
        try:
            manifests = chart.render(
                values, name=req["release"], namespace=req["namespace"], is_install=True
            )
        except helm.HelmError as e:
            out["renderError"] = str(e)
            json.dump(out, sys.stdout)
            return
    lint = helm.lint(
        chart_dir, values, strict=True, namespace=req["namespace"], kube_version="v" + kube_version
    )
    out["lint"] = {"messages": lint.get("messages", []), "errors": lint.get("errors", [])}



    crd_dir = os.path.join(chart_dir, "crds")
    crd_schemas = {}
    for name in sorted(os.listdir(crd_dir)):
        with open(os.path.join(crd_dir, name), encoding="utf-8") as f:
            text = f.read()
        out["crds"][name] = text
        for doc in yaml.safe_load_all(text):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                for v in doc["spec"]["versions"]:
                    key = (doc["spec"]["group"] + "/" + v["name"], doc["spec"]["names"]["kind"])
                    crd_schemas[key] = crd_schema(doc, v["name"])

    for template in sorted(manifests):
        text = manifests[template]
        if template.endswith("NOTES.txt"):
            out["notes"] = text
            continue
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            out["objects"].append({"template": template, "object": doc})
            kind, api_version = doc.get("kind"), doc.get("apiVersion")
            name = (doc.get("metadata") or {}).get("name")
            entry = {"template": template, "kind": kind, "name": name, "errors": []}
            if (api_version, kind) in crd_schemas:
                entry["schema"] = "crd"
                validator = jsonschema.Draft7Validator(crd_schemas[(api_version, kind)])
                for err in sorted(validator.iter_errors(doc), key=str):
                    path = "/".join(str(p) for p in err.absolute_path)
                    entry["errors"].append(f"{path}: {err.message}")
            else:
                try:
                    kubernetes_validate.validate(doc, kube_version, strict=True)
                    entry["schema"] = "kubernetes-" + kube_version + "-strict"
                except kubernetes_validate.SchemaNotFoundError:
                    entry["schema"] = "none"
                except kubernetes_validate.ValidationError as e:
                    entry["schema"] = "kubernetes-" + kube_version + "-strict"
                    # A jsonschema error (the first one found), copied into this exception.
                    path = "/".join(str(p) for p in getattr(e, "absolute_path", []))
                    entry["errors"].append(f"{path}: {getattr(e, 'message', str(e))}")
            out["validation"].append(entry)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
