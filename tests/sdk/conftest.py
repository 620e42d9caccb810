"""Fixtures for the official Tencent Cloud tools against a running clb-ingress emulator.

tests/sdk/run.sh starts the emulator and exports EMULATOR_ENDPOINT (host:port), the credentials
and TCCLI (path of the tccli executable).
"""
import json
import os
import subprocess
import tempfile
import urllib.request

import pytest
from tencentcloud.clb.v20180317 import clb_client, models
from tencentcloud.common import credential
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

REGION = os.environ.get("EMULATOR_REGION", "ap-guangzhou")


@pytest.fixture(scope="session")
def endpoint():
    ep = os.environ.get("EMULATOR_ENDPOINT")
    assert ep, "EMULATOR_ENDPOINT (127.0.0.1:PORT) must be set; use tests/sdk/run.sh"
    return ep


@pytest.fixture(scope="session")
def secret():
    return (os.environ["EMULATOR_SECRET_ID"], os.environ["EMULATOR_SECRET_KEY"])


def make_client(endpoint, secret_id, secret_key):
    http = HttpProfile(protocol="http", endpoint=endpoint)
    return clb_client.ClbClient(
        credential.Credential(secret_id, secret_key), REGION, ClientProfile(httpProfile=http)
    )


@pytest.fixture()
def clb(endpoint, secret):
    return make_client(endpoint, *secret)


class Admin:
    """The emulator's JSON admin endpoint."""

    def __init__(self, endpoint):
        self.base = "http://%s/_emulator/" % endpoint
        # Admin writes need the token run.sh gave the emulator (CLB_EMULATOR_ADMIN_TOKEN).
        self.token = os.environ["EMULATOR_ADMIN_TOKEN"]

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        req.add_header("X-Emulator-Admin-Token", self.token)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())


@pytest.fixture()
def admin(endpoint):
    a = Admin(endpoint)
    yield a
    a.call("POST", "resume")
    a.call("PUT", "faults", {})


@pytest.fixture(scope="session")
def self_signed():
    """A self-signed certificate and key (PEM) made with the openssl command."""
    with tempfile.TemporaryDirectory() as d:
        cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
             "-out", cert, "-days", "2", "-subj", "/CN=www.example.com"],
            check=True, capture_output=True,
        )
        with open(cert) as c, open(key) as k:
            return c.read(), k.read()


def request(model_cls, **fields):
    req = model_cls()
    req.from_json_string(json.dumps(fields))
    return req


@pytest.fixture()
def models_mod():
    return models
