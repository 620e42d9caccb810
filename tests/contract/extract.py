#!/usr/bin/env python3
"""Extract the parts of the official API description the emulator and the client rely on.

    python3 tests/contract/extract.py <tccli package dir>

<tccli package dir> is the `tccli` directory of the pinned tccli wheel (tests/sdk/requirements-tccli.txt;
`pip download tccli==3.1.189.1 --no-deps` and unzip). Writes

- crates/emulator/src/actions/contract.json: for every action the emulator serves, its input and
  output models and every object they reference (member names, types, `required`, nullability);
  no documentation text. The emulator checks every request against it (UnknownParameter,
  MissingParameter, types).
- tests/contract/samples/<service>.json: the official sample responses (examples.json) of the
  actions the client decodes.

tests/sdk/test_contract.py re-runs this extraction against the installed tccli and fails when the
committed files differ, so they cannot drift from the pinned spec.
"""
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TCCLI_VERSION = "3.1.189.1"
SERVICES = {"clb": "v20180317", "ssl": "v20191205", "tag": "v20180813"}


def served_actions():
    """CLB_ACTIONS, SSL_ACTIONS and TAG_ACTIONS of crates/emulator/src/actions/mod.rs."""
    src = open(os.path.join(ROOT, "crates/emulator/src/actions/mod.rs"), encoding="utf-8").read()
    out = {}
    for svc, const in (("clb", "CLB_ACTIONS"), ("ssl", "SSL_ACTIONS"), ("tag", "TAG_ACTIONS")):
        m = re.search(r"pub const %s: &\[&str\] = &\[(.*?)\];" % const, src, re.S)
        out[svc] = re.findall(r'"([A-Za-z]+)"', m.group(1))
    return out


def client_actions():
    """The actions the client calls (crates/clb-api/src/actions.rs `ops`)."""
    src = open(os.path.join(ROOT, "crates/clb-api/src/actions.rs"), encoding="utf-8").read()
    return {
        ((svc[1:-2] if svc else "clb"), name)
        for name, svc in re.findall(r'Op::(?:read|write)\("([A-Za-z]+)"\)(\.(?:ssl|tag)\(\))?', src)
    }


def load(tccli_dir, svc, name):
    path = os.path.join(tccli_dir, "services", svc, SERVICES[svc], name)
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def model(api, name, into):
    if name in into or name not in api["objects"]:
        return
    obj = api["objects"][name]
    members = []
    into[name] = members
    for m in obj.get("members", []):
        members.append(
            {
                "name": m["name"],
                "type": m["type"],
                "member": m["member"],
                "required": bool(m.get("required", False)),
                "nullable": bool(m.get("value_allowed_null", False)),
            }
        )
        model(api, m["member"], into)


def extract(tccli_dir):
    contract = {"tccli": TCCLI_VERSION, "services": {}}
    samples = {}
    wanted = client_actions()
    for svc, actions in served_actions().items():
        api = load(tccli_dir, svc, "api.json")
        examples = load(tccli_dir, svc, "examples.json")
        objects = {}
        acts = {}
        for a in actions:
            spec = api["actions"].get(a)
            if spec is None:
                acts[a] = None  # not in the spec: the contract test reports it
                continue
            acts[a] = {"input": spec["input"], "output": spec["output"]}
            model(api, spec["input"], objects)
            model(api, spec["output"], objects)
        contract["services"][svc] = {
            "version": SERVICES[svc],
            "actions": acts,
            "objects": dict(sorted(objects.items())),
        }
        samples[svc] = {
            "tccli": TCCLI_VERSION,
            "actions": {
                a: [json.loads(e["output"]) for e in examples["actions"].get(a, [])]
                for a in sorted(actions)
                if (svc, a) in wanted
            },
        }
    return contract, samples


def rendered(obj):
    return json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=False) + "\n"


def outputs():
    return {
        "contract": os.path.join(ROOT, "crates/emulator/src/actions/contract.json"),
        "clb": os.path.join(ROOT, "tests/contract/samples/clb.json"),
        "ssl": os.path.join(ROOT, "tests/contract/samples/ssl.json"),
        "tag": os.path.join(ROOT, "tests/contract/samples/tag.json"),
    }


def main():
    contract, samples = extract(sys.argv[1])
    out = outputs()
    with open(out["contract"], "w", encoding="utf-8") as f:
        f.write(rendered(contract))
    for svc in SERVICES:
        with open(out[svc], "w", encoding="utf-8") as f:
            f.write(rendered(samples[svc]))


if __name__ == "__main__":
    main()
