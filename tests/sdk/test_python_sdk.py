"""tencentcloud-sdk-python-clb (the official SDK) against the emulator: the issue's "done when"."""
import time

import pytest
from tencentcloud.common import abstract_client
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

from conftest import make_client, request

TASK_TIMEOUT_S = 10
POLL_S = 0.1


def wait_task(clb, models, task_id):
    deadline = time.time() + TASK_TIMEOUT_S
    while True:
        rsp = clb.DescribeTaskStatus(request(models.DescribeTaskStatusRequest, TaskId=task_id))
        if rsp.Status != 2:
            return rsp.Status
        assert time.time() < deadline, "task %s never finished" % task_id
        time.sleep(POLL_S)


def create_lb(clb, models):
    rsp = clb.CreateLoadBalancer(
        request(models.CreateLoadBalancerRequest, LoadBalancerType="OPEN", LoadBalancerName="sdk-test",
                Tags=[{"TagKey": "suite", "TagValue": "sdk"}])
    )
    assert wait_task(clb, models, rsp.RequestId) == 0
    return rsp.LoadBalancerIds[0]


def test_the_sdk_creates_a_clb_http_and_https_listeners_rules_and_targets_and_polls_each_task(
    clb, models_mod, self_signed
):
    models = models_mod
    lb = create_lb(clb, models)
    assert lb.startswith("lb-") and len(lb) == 11

    http = clb.CreateListener(
        request(models.CreateListenerRequest, LoadBalancerId=lb, Ports=[80], Protocol="HTTP",
                ListenerNames=["http"])
    )
    assert wait_task(clb, models, http.RequestId) == 0
    cert, key = self_signed
    https = clb.CreateListener(
        request(models.CreateListenerRequest, LoadBalancerId=lb, Ports=[443], Protocol="HTTPS",
                Certificate={"SSLMode": "UNIDIRECTIONAL", "CertName": "www", "CertContent": cert,
                             "CertKey": key})
    )
    assert wait_task(clb, models, https.RequestId) == 0

    rules = clb.CreateRule(
        request(models.CreateRuleRequest, LoadBalancerId=lb, ListenerId=https.ListenerIds[0],
                Rules=[{"Domain": "www.example.com", "Url": "/"},
                       {"Domain": "www.example.com", "Url": "/api"}])
    )
    assert wait_task(clb, models, rules.RequestId) == 0
    assert len(rules.LocationIds) == 2

    reg = clb.RegisterTargets(
        request(models.RegisterTargetsRequest, LoadBalancerId=lb, ListenerId=https.ListenerIds[0],
                LocationId=rules.LocationIds[1],
                Targets=[{"EniIp": "10.0.0.7", "Port": 8080, "Weight": 20}])
    )
    assert wait_task(clb, models, reg.RequestId) == 0

    described = clb.DescribeListeners(request(models.DescribeListenersRequest, LoadBalancerId=lb))
    by_port = {l.Port: l for l in described.Listeners}
    assert by_port[80].Protocol == "HTTP"
    assert by_port[443].Certificate.CertId
    assert [r.Url for r in by_port[443].Rules] == ["/", "/api"]
    assert by_port[443].Rules[0].DefaultServer is True

    targets = clb.DescribeTargets(request(models.DescribeTargetsRequest, LoadBalancerId=lb))
    https_backend = [l for l in targets.Listeners if l.Port == 443][0]
    api_rule = [r for r in https_backend.Rules if r.Url == "/api"][0]
    assert api_rule.Targets[0].PrivateIpAddresses == ["10.0.0.7"]
    assert api_rule.Targets[0].Weight == 20

    lbs = clb.DescribeLoadBalancers(
        request(models.DescribeLoadBalancersRequest,
                Filters=[{"Name": "tag:suite", "Values": ["sdk"]}])
    )
    assert lb in [x.LoadBalancerId for x in lbs.LoadBalancerSet]
    vip = [x for x in lbs.LoadBalancerSet if x.LoadBalancerId == lb][0].LoadBalancerVips[0]
    assert vip.startswith("127.")


def test_a_bad_signature_gets_auth_failure_signature_failure(endpoint, secret, models_mod):
    bad = make_client(endpoint, secret[0], secret[1] + "x")
    with pytest.raises(TencentCloudSDKException) as e:
        bad.DescribeLoadBalancers(request(models_mod.DescribeLoadBalancersRequest))
    assert e.value.get_code() == "AuthFailure.SignatureFailure"
    assert e.value.get_request_id()


def test_an_unknown_secret_id_gets_auth_failure_secret_id_not_found(endpoint, secret, models_mod):
    bad = make_client(endpoint, "AKIDnobody", secret[1])
    with pytest.raises(TencentCloudSDKException) as e:
        bad.DescribeLoadBalancers(request(models_mod.DescribeLoadBalancersRequest))
    assert e.value.get_code() == "AuthFailure.SecretIdNotFound"


def test_an_expired_timestamp_gets_auth_failure_signature_expire(clb, models_mod, monkeypatch):
    real = time.time
    monkeypatch.setattr(abstract_client.time, "time", lambda: real() - 600)
    with pytest.raises(TencentCloudSDKException) as e:
        clb.DescribeLoadBalancers(request(models_mod.DescribeLoadBalancersRequest))
    assert e.value.get_code() == "AuthFailure.SignatureExpire"


def test_a_busy_clb_answers_resource_in_operating_until_its_task_ends(clb, models_mod, admin):
    models = models_mod
    lb = create_lb(clb, models)
    admin.call("POST", "pause")
    first = clb.CreateListener(
        request(models.CreateListenerRequest, LoadBalancerId=lb, Ports=[8080], Protocol="HTTP")
    )
    with pytest.raises(TencentCloudSDKException) as e:
        clb.CreateListener(
            request(models.CreateListenerRequest, LoadBalancerId=lb, Ports=[8081], Protocol="HTTP")
        )
    assert e.value.get_code() == "FailedOperation.ResourceInOperating"
    assert lb in e.value.get_message()
    status = clb.DescribeTaskStatus(request(models.DescribeTaskStatusRequest, TaskId=first.RequestId))
    assert status.Status == 2
    admin.call("POST", "resume")
    assert wait_task(clb, models, first.RequestId) == 0
    second = clb.CreateListener(
        request(models.CreateListenerRequest, LoadBalancerId=lb, Ports=[8081], Protocol="HTTP")
    )
    assert wait_task(clb, models, second.RequestId) == 0


def test_an_injected_failed_task_reports_status_one_with_a_message(clb, models_mod, admin):
    models = models_mod
    lb = create_lb(clb, models)
    admin.call("PUT", "faults", {"task_failure": {"CreateListener": 1.0}})
    rsp = clb.CreateListener(
        request(models.CreateListenerRequest, LoadBalancerId=lb, Ports=[9000], Protocol="HTTP")
    )
    assert wait_task(clb, models, rsp.RequestId) == 1
    status = clb.DescribeTaskStatus(request(models.DescribeTaskStatusRequest, TaskId=rsp.RequestId))
    assert status.Message
