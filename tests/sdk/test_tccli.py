"""tccli (the official command line) against the emulator, via --endpoint http://127.0.0.1:PORT."""
import json
import os
import subprocess
import tempfile
import time

import pytest

REGION = os.environ.get("EMULATOR_REGION", "ap-guangzhou")
TASK_TIMEOUT_S = 10


@pytest.fixture(scope="module")
def tccli_home():
    with tempfile.TemporaryDirectory() as home:
        yield home


def tccli(endpoint, secret, home, *args, key=None):
    exe = os.environ.get("TCCLI")
    assert exe, "TCCLI (path of tccli) must be set; use tests/sdk/run.sh"
    cmd = [exe, "clb", *args, "--secretId", secret[0], "--secretKey", key or secret[1],
           "--region", REGION, "--endpoint", "http://" + endpoint]
    env = dict(os.environ, HOME=home)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


def test_tccli_creates_a_clb_and_a_listener_and_polls_the_tasks(endpoint, secret, tccli_home):
    out = tccli(endpoint, secret, tccli_home, "CreateLoadBalancer", "--LoadBalancerType", "OPEN")
    assert out.returncode == 0, out.stderr
    created = json.loads(out.stdout)
    lb = created["LoadBalancerIds"][0]

    def wait(task):
        deadline = time.time() + TASK_TIMEOUT_S
        while True:
            st = tccli(endpoint, secret, tccli_home, "DescribeTaskStatus", "--TaskId", task)
            assert st.returncode == 0, st.stderr
            status = json.loads(st.stdout)["Status"]
            if status != 2:
                return status
            assert time.time() < deadline
            time.sleep(0.1)

    assert wait(created["RequestId"]) == 0
    out = tccli(endpoint, secret, tccli_home, "CreateListener", "--LoadBalancerId", lb,
                "--Ports", "[80]", "--Protocol", "HTTP")
    assert out.returncode == 0, out.stderr
    assert wait(json.loads(out.stdout)["RequestId"]) == 0
    out = tccli(endpoint, secret, tccli_home, "DescribeListeners", "--LoadBalancerId", lb)
    assert out.returncode == 0, out.stderr
    assert [l["Port"] for l in json.loads(out.stdout)["Listeners"]] == [80]


def test_tccli_reports_the_real_code_for_a_bad_signature(endpoint, secret, tccli_home):
    out = tccli(endpoint, secret, tccli_home, "DescribeLoadBalancers", key="not-the-key")
    assert out.returncode != 0
    assert "AuthFailure.SignatureFailure" in out.stdout + out.stderr
