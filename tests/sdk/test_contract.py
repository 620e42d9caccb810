"""The emulator against the official API description (issue #13 item 1).

The spec is the pinned tccli's api.json (tests/sdk/requirements-tccli.txt); the per-service error
codes are the pinned tencentcloud-sdk-python's errorcodes.py (the same tccli venv). run.sh exports
TCCLI_SERVICES_DIR and TENCENTCLOUD_DIR. For every action the emulator serves
(crates/emulator/src/actions/mod.rs) this checks: the committed spec excerpt is the pinned spec;
each required parameter, omitted, is refused with MissingParameter; an unknown parameter (also
nested) is UnknownParameter; every documented constraint of contract.rs's CONSTRAINTS table is
stated in the spec's description of that field and is enforced; every response field the
emulator returns exists in the output model; and every error code the emulator answered during
this module is documented for the service or is a common code.
"""
import copy
import importlib.util
import json
import os
import re
import time
from collections import defaultdict

import pytest
from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VERSIONS = {"clb": "2018-03-17", "ssl": "2019-12-05", "tag": "2018-08-13"}

# Common error codes of API 3.0 (every product's error-code page; clb-api.md section 5).
COMMON_CODES = {
    "ActionOffline", "AuthFailure.InvalidAuthorization", "AuthFailure.InvalidSecretId",
    "AuthFailure.MFAFailure", "AuthFailure.SecretIdNotFound", "AuthFailure.SignatureExpire",
    "AuthFailure.SignatureFailure", "AuthFailure.TokenFailure", "AuthFailure.UnauthorizedOperation",
    "DryRunOperation", "FailedOperation", "InternalError", "InvalidAction", "InvalidParameter",
    "InvalidParameterValue", "InvalidRequest", "IpInBlacklist", "IpNotInWhitelist", "LimitExceeded",
    "MissingParameter", "NoSuchProduct", "NoSuchVersion", "RequestLimitExceeded",
    "RequestLimitExceeded.GlobalRegionUinLimitExceeded", "RequestLimitExceeded.IPLimitExceeded",
    "RequestLimitExceeded.UinLimitExceeded", "RequestSizeLimitExceeded", "ResourceInUse",
    "ResourceInsufficient", "ResourceNotFound", "ResourceUnavailable", "ResponseSizeLimitExceeded",
    "ServiceUnavailable", "UnauthorizedOperation", "UnknownParameter", "UnsupportedOperation",
    "UnsupportedProtocol", "UnsupportedRegion",
}

SEEN_CODES = defaultdict(set)  # (service, action) -> codes answered


def _extract_module():
    path = os.path.join(ROOT, "tests", "contract", "extract.py")
    spec = importlib.util.spec_from_file_location("contract_extract", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


EXTRACT = _extract_module()


def services_dir():
    d = os.environ.get("TCCLI_SERVICES_DIR")
    assert d, "TCCLI_SERVICES_DIR must be set; use tests/sdk/run.sh"
    return d


def load_api(svc):
    with open(os.path.join(services_dir(), svc, EXTRACT.SERVICES[svc], "api.json"), encoding="utf-8") as f:
        return json.load(f)


def error_codes(svc):
    d = os.environ.get("TENCENTCLOUD_DIR")
    assert d, "TENCENTCLOUD_DIR must be set; use tests/sdk/run.sh"
    path = os.path.join(d, svc, "v" + VERSIONS[svc].replace("-", ""), "errorcodes.py")
    with open(path, encoding="utf-8") as f:
        return set(re.findall(r"= '([A-Za-z0-9.]+)'", f.read()))


API = {}
SERVED = EXTRACT.served_actions()


def api(svc):
    if svc not in API:
        API[svc] = load_api(svc)
    return API[svc]


def members(svc, model):
    return api(svc)["objects"][model].get("members", [])


def constraints():
    """CONSTRAINTS of crates/emulator/src/actions/contract.rs as (model, field, kind, args)."""
    src = open(os.path.join(ROOT, "crates/emulator/src/actions/contract.rs"), encoding="utf-8").read()
    consts = dict(re.findall(r'const (\w+): &\[&str\] = (&\[[^\]]*\]);', src))
    table = src[src.index("pub const CONSTRAINTS"):]
    table = table[: table.index("];") + 2]
    rows = []
    for model, field, kind, args in re.findall(
        r'\(\s*"(\w+)",\s*"(\w+)",\s*(\w+)\(([^()]*)\),?\s*\)', table
    ):
        args = consts.get(args.strip(), args)
        if kind in ("OneOf", "OneOfIgnoreCase"):
            values = re.findall(r'"([^"]+)"', args)
        else:
            values = [int(x) for x in re.findall(r"-?\d+", args)]
        rows.append((model, field, kind, values))
    return rows


CONSTRAINTS = constraints()


# ------------------------------------------------------------------------------------------------
# Calling the emulator with arbitrary bodies
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def raw(endpoint, secret):
    clients = {}
    for svc, version in VERSIONS.items():
        http = HttpProfile(protocol="http", endpoint=endpoint)
        clients[svc] = CommonClient(
            svc, version, credential.Credential(*secret), "ap-guangzhou",
            profile=ClientProfile(httpProfile=http),
        )

    def call(svc, action, body):
        """(response dict, None) or (None, (code, message)); every code is recorded. The
        emulator's 20 calls/s per action limit is waited out, not reported."""
        for _ in range(10):
            try:
                return clients[svc].call_json(action, body)["Response"], None
            except TencentCloudSDKException as e:
                SEEN_CODES[(svc, action)].add(e.code)
                if e.code != "RequestLimitExceeded":
                    return None, (e.code, e.message)
                time.sleep(1.05)
        raise AssertionError("%s stayed rate-limited" % action)

    yield call
    time.sleep(1.05)  # leave the next module a fresh rate-limit window


def dummy(svc, member, kind, name=""):
    if kind == "list":
        return [dummy(svc, member, "scalar", name)]
    if member == "string":
        return {"LoadBalancerId": "lb-contrac0", "ListenerId": "lbl-contrac0"}.get(name, "x1")
    if member in ("int64", "uint64"):
        return 80
    if member == "float":
        return 1.0
    if member == "bool":
        return False
    return minimal(svc, member)


def first_allowed(model, field):
    for m, f, kind, values in CONSTRAINTS:
        if (m, f) == (model, field) and kind in ("OneOf", "OneOfIgnoreCase", "IntOneOf"):
            return values[0]
    return None


def minimal(svc, model):
    """A body with every required member of `model` (recursively), and nothing else."""
    body = {}
    for m in members(svc, model):
        if m.get("required"):
            allowed = first_allowed(model, m["name"])
            body[m["name"]] = allowed if allowed is not None else dummy(svc, m["member"], m["type"], m["name"])
    return body


def served():
    return [(svc, a) for svc, acts in SERVED.items() for a in acts]


def input_model(svc, action):
    return api(svc)["actions"][action]["input"]


def output_model(svc, action):
    return api(svc)["actions"][action]["output"]


# ------------------------------------------------------------------------------------------------
# The spec excerpt and the action list
# ------------------------------------------------------------------------------------------------

def test_the_committed_spec_excerpt_and_samples_are_what_the_pinned_tccli_says():
    contract, samples = EXTRACT.extract(services_dir().rsplit(os.sep, 1)[0])
    out = EXTRACT.outputs()
    with open(out["contract"], encoding="utf-8") as f:
        assert f.read() == EXTRACT.rendered(contract), "re-run tests/contract/extract.py"
    for svc in VERSIONS:
        with open(out[svc], encoding="utf-8") as f:
            assert f.read() == EXTRACT.rendered(samples[svc]), "re-run tests/contract/extract.py"


def test_every_action_the_emulator_serves_exists_in_the_official_spec():
    missing = [(svc, a) for svc, a in served() if a not in api(svc)["actions"]]
    assert served() and not missing, missing


# ------------------------------------------------------------------------------------------------
# Required and unknown parameters
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("svc,action", served())
def test_omitting_each_required_parameter_is_refused(raw, svc, action):
    model = input_model(svc, action)
    base = minimal(svc, model)
    paths = []
    for name, value in base.items():
        paths.append((name,))
        if isinstance(value, list) and value and isinstance(value[0], dict):
            paths.extend((name, 0, inner) for inner in value[0])
        elif isinstance(value, dict):
            paths.extend((name, inner) for inner in value)
    for path in paths:
        body = copy.deepcopy(base)
        target = body
        for p in path[:-1]:
            target = target[p]
        del target[path[-1]]
        rsp, err = raw(svc, action, body)
        assert err is not None, "%s without %s succeeded: %s" % (action, path, rsp)
        assert err[0] in ("MissingParameter", "InvalidParameter"), (action, path, err)
        assert str(path[-1]) in err[1], (action, path, err)


@pytest.mark.parametrize("svc,action", served())
def test_an_unknown_parameter_is_refused_with_unknown_parameter(raw, svc, action):
    body = minimal(svc, input_model(svc, action))
    body["Weigth"] = 50
    rsp, err = raw(svc, action, body)
    assert err is not None and err[0] == "UnknownParameter", (action, rsp, err)
    assert "`Weigth`" in err[1], err


def test_a_misspelt_nested_target_field_is_refused_not_silently_ignored(raw):
    body = {"LoadBalancerId": "lb-contrac0", "ListenerId": "lbl-contrac0",
            "Targets": [{"Port": 80, "InstanceId": "ins-abcdefgh", "Weigth": 50}]}
    _, err = raw("clb", "RegisterTargets", body)
    assert err == ("UnknownParameter", "The parameter `Targets.0.Weigth` is not recognized."), err


# ------------------------------------------------------------------------------------------------
# Documented constraints (description text of api.json)
# ------------------------------------------------------------------------------------------------

def doc_of(model, field):
    for svc in VERSIONS:
        for m in api(svc)["objects"].get(model, {}).get("members", []):
            if m["name"] == field:
                return m["document"]
    return None


def test_the_constraint_table_has_a_row_for_each_kind_of_constraint():
    kinds = {k for _, _, k, _ in CONSTRAINTS}
    assert len(CONSTRAINTS) >= 40, CONSTRAINTS
    assert {"Range", "ZeroOrRange", "IntOneOf", "OneOf", "Len", "Cap"} <= kinds


@pytest.mark.parametrize("model,field,kind,values", CONSTRAINTS,
                         ids=["%s.%s" % (r[0], r[1]) for r in CONSTRAINTS])
def test_each_enforced_constraint_is_stated_in_the_official_description(model, field, kind, values):
    doc = doc_of(model, field)
    assert doc is not None, "%s.%s is not in api.json" % (model, field)
    for v in values:
        if kind == "IntOneOf" and len(values) == 1:
            assert str(v) in doc, (model, field, v, doc)
        elif kind in ("Range", "ZeroOrRange", "Cap", "Len"):
            if v == 0:
                continue  # "0" lower bounds are implicit (no minimum, or "0 = off")
            assert str(v) in doc, (model, field, v, doc)
        else:
            assert str(v) in doc, (model, field, v, doc)


def invalid_and_valid(kind, values, svc, member):
    if kind == "Range":
        return values[1] + 1, values[0]
    if kind == "ZeroOrRange":
        return values[0] - 1, 0
    if kind == "IntOneOf":
        return max(values) + 7, values[0]
    if kind in ("OneOf", "OneOfIgnoreCase"):
        return "NOT-A-DOCUMENTED-VALUE", values[0]
    if kind == "Len":
        return "a" * (values[1] + 1), "a" * max(values[0], 1)
    if kind == "Cap":
        item = dummy(svc, member, "scalar")
        return [item] * (values[0] + 1), [item]
    raise AssertionError(kind)


EXPECTED_CODE = {
    "Range": "InvalidParameterValue.Range", "ZeroOrRange": "InvalidParameterValue.Range",
    "IntOneOf": "InvalidParameterValue", "OneOf": "InvalidParameterValue",
    "OneOfIgnoreCase": "InvalidParameterValue", "Len": "InvalidParameterValue.Length",
    "Cap": "InvalidParameterValue.Length",
}


def placements(svc, model):
    """(action, path to an instance of `model` in the action's input) for every served action."""
    out = []
    for action in SERVED[svc]:
        def walk(current, path, depth):
            if depth > 3:
                return
            if current == model:
                out.append((action, path))
                return
            for m in members(svc, current):
                if m["member"] in api(svc)["objects"]:
                    step = (m["name"], 0) if m["type"] == "list" else (m["name"],)
                    walk(m["member"], path + step, depth + 1)
        walk(input_model(svc, action), (), 0)
    return out


@pytest.mark.parametrize("model,field,kind,values", CONSTRAINTS,
                         ids=["%s.%s" % (r[0], r[1]) for r in CONSTRAINTS])
def test_each_documented_constraint_is_enforced_wherever_its_model_is_sent(
    raw, model, field, kind, values
):
    svc = "clb" if model in api("clb")["objects"] else "ssl"
    member = next(m for m in members(svc, model) if m["name"] == field)
    bad, good = invalid_and_valid(kind, values, svc, member["member"])
    where = placements(svc, model)
    assert where, "%s is sent by no served action" % model
    for action, path in where:
        for value, expect_refused in ((bad, True), (good, False)):
            body = minimal(svc, input_model(svc, action))
            obj = object_at(svc, action, body, path)
            obj[field] = value
            dotted = ".".join(str(p) for p in path + (field,))
            rsp, err = raw(svc, action, body)
            if expect_refused:
                assert err is not None and err[0] == EXPECTED_CODE[kind], (action, dotted, value, err)
                assert "`%s`" % dotted in err[1], (action, dotted, err)
            else:
                assert err is None or "`%s`" % dotted not in err[1], (action, dotted, value, err)


def object_at(svc, action, body, path):
    """The object at `path` (names, and 0 after a list) in `body`, made minimal where absent."""
    model = input_model(svc, action)
    obj = body
    i = 0
    while i < len(path):
        name = path[i]
        m = next(m for m in members(svc, model) if m["name"] == name)
        model = m["member"]
        if m["type"] == "list":
            items = obj.setdefault(name, [])
            if not items:
                items.append(minimal(svc, model))
            obj = items[0]
            i += 2
        else:
            obj = obj.setdefault(name, minimal(svc, model))
            i += 1
    return obj


# ------------------------------------------------------------------------------------------------
# Response shapes and error codes
# ------------------------------------------------------------------------------------------------

def unknown_fields(svc, model, value, path=""):
    """Field paths of `value` that the output `model` does not define."""
    if model not in api(svc)["objects"] or not isinstance(value, dict):
        return []
    ms = {m["name"]: m for m in members(svc, model)}
    bad = []
    for k, v in value.items():
        if k == "RequestId" and path == "":
            continue
        if k not in ms:
            bad.append(path + k)
            continue
        items = v if isinstance(v, list) else [v]
        for item in items:
            bad.extend(unknown_fields(svc, ms[k]["member"], item, path + k + "."))
    return bad


def wait(raw, request_id):
    deadline = time.time() + 10
    while time.time() < deadline:
        rsp, err = raw("clb", "DescribeTaskStatus", {"TaskId": request_id})
        assert err is None, err
        if rsp["Status"] != 2:
            return rsp["Status"]
        time.sleep(0.05)
    raise AssertionError("task %s did not finish" % request_id)


def test_every_response_field_the_emulator_returns_exists_in_the_output_model(raw, self_signed):
    cert_pem, key_pem = self_signed
    seen = {}

    def ok(svc, action, body):
        rsp, err = raw(svc, action, body)
        assert err is None, (action, body, err)
        seen[(svc, action)] = rsp
        return rsp

    lb_rsp = ok("clb", "CreateLoadBalancer", {"LoadBalancerType": "OPEN", "LoadBalancerName": "contract",
                                             "Tags": [{"TagKey": "suite", "TagValue": "contract"}]})
    lb = lb_rsp["LoadBalancerIds"][0]
    assert wait(raw, lb_rsp["RequestId"]) == 0
    cert = ok("ssl", "UploadCertificate", {"CertificatePublicKey": cert_pem, "CertificatePrivateKey": key_pem,
                                           "Alias": "contract"})["CertificateId"]
    tcp = ok("clb", "CreateListener", {"LoadBalancerId": lb, "Ports": [9001], "Protocol": "TCP",
                                       "HealthCheck": {"HealthSwitch": 1, "TimeOut": 2}})
    wait(raw, tcp["RequestId"])
    https = ok("clb", "CreateListener", {"LoadBalancerId": lb, "Ports": [443], "Protocol": "HTTPS",
                                         "Certificate": {"SSLMode": "UNIDIRECTIONAL", "CertId": cert}})
    wait(raw, https["RequestId"])
    https_id = https["ListenerIds"][0]
    rule = ok("clb", "CreateRule", {"LoadBalancerId": lb, "ListenerId": https_id,
                                    "Rules": [{"Domain": "www.example.com", "Url": "/api"},
                                              {"Domain": "www.example.com", "Url": "/old"}]})
    wait(raw, rule["RequestId"])
    loc, old = rule["LocationIds"]
    reg = ok("clb", "RegisterTargets", {"LoadBalancerId": lb, "ListenerId": https_id, "LocationId": loc,
                                        "Targets": [{"Port": 8080, "EniIp": "10.0.0.9", "Weight": 20}]})
    wait(raw, reg["RequestId"])
    reg = ok("clb", "RegisterTargets", {"LoadBalancerId": lb, "ListenerId": tcp["ListenerIds"][0],
                                        "Targets": [{"Port": 8080, "EniIp": "10.0.0.9"}]})
    wait(raw, reg["RequestId"])
    mr = ok("clb", "ManualRewrite", {"LoadBalancerId": lb, "SourceListenerId": https_id,
                                     "TargetListenerId": https_id,
                                     "RewriteInfos": [{"SourceLocationId": old, "TargetLocationId": loc}]})
    wait(raw, mr["RequestId"])
    ok("clb", "DescribeLoadBalancers", {"LoadBalancerIds": [lb]})
    ok("clb", "DescribeListeners", {"LoadBalancerId": lb})
    ok("clb", "DescribeTargets", {"LoadBalancerId": lb})
    ok("clb", "DescribeTargetHealth", {"LoadBalancerIds": [lb]})
    ok("clb", "DescribeQuota", {})
    ok("clb", "DescribeRewrite", {"LoadBalancerId": lb})
    ok("clb", "BatchRegisterTargets", {"LoadBalancerId": lb, "Targets": [
        {"ListenerId": https_id, "LocationId": loc, "Port": 8081, "EniIp": "10.0.0.9"}]})
    ok("ssl", "DescribeCertificate", {"CertificateId": cert})
    ok("ssl", "DescribeCertificates", {"Limit": "5", "Offset": "0"})

    bad = {}
    for (svc, action), rsp in seen.items():
        fields = unknown_fields(svc, output_model(svc, action), rsp)
        if fields:
            bad[action] = fields
    assert len(seen) >= 15 and not bad, bad

    listeners = seen[("clb", "DescribeListeners")]["Listeners"]
    assert [l["Rules"] for l in listeners if l["Protocol"] == "TCP"] == [None]
    targets = seen[("clb", "DescribeTargets")]["Listeners"]
    assert [l["Targets"] for l in targets if l["Protocol"] == "HTTPS"] == [None]


@pytest.mark.parametrize("svc,action", served())
def test_calls_on_resources_that_do_not_exist_are_refused_with_a_code(raw, svc, action):
    body = minimal(svc, input_model(svc, action))
    rsp, err = raw(svc, action, body)
    if err is None:
        # Reads of nothing and quota reads succeed; writes on a missing CLB must not.
        assert action.startswith("Describe") or action in ("CreateLoadBalancer", "UploadCertificate") \
            or action.startswith("Batch"), (action, rsp)


def test_every_error_code_the_emulator_answered_is_documented_for_its_service():
    assert SEEN_CODES, "no error was recorded: the tests above did not run"
    documented = {svc: error_codes(svc) | COMMON_CODES for svc in VERSIONS}
    assert "LimitExceeded.RateLimitExceeded" in documented["ssl"]
    assert "FailedOperation.CertificateNotFound" not in error_codes("clb")
    bad = {"%s %s" % k: sorted(c - documented[k[0]]) for k, c in SEEN_CODES.items()
           if c - documented[k[0]]}
    assert not bad, bad
