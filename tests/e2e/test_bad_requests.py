"""Malformed request bodies over netbayd's real socket (issue 13: `"IPAM": "bad"` answered
500, `"Labels": {"a": 1}` was accepted): 400 with one line naming the field and the value,
and nothing changed, in the record or in the kernel."""

from __future__ import annotations

import pytest

from helpers import Env, snapshot
from rawhttp import request

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

NET = '"Name": "n1", '
CASES = [
    ("/networks/create", '{"Name": "n1", "IPAM": "bad"}',
     'invalid JSON: cannot unmarshal string "bad" into field IPAM of type object'),
    ("/networks/create", '{"Name": "n1", "Labels": {"a": 1}}',
     "invalid JSON: cannot unmarshal number 1 into field Labels.a of type string"),
    ("/networks/create", '{"Name": "n1", "Options": {"com.docker.network.bridge.name": 7}}',
     "invalid JSON: cannot unmarshal number 7 into field "
     "Options.com.docker.network.bridge.name of type string"),
    ("/networks/create", '{"Name": ["n1"]}',
     'invalid JSON: cannot unmarshal array ["n1"] into field Name of type string'),
    ("/networks/create", "{" + NET + '"Driver": 1}',
     "invalid JSON: cannot unmarshal number 1 into field Driver of type string"),
    ("/networks/create", "{" + NET + '"Internal": "true"}',
     'invalid JSON: cannot unmarshal string "true" into field Internal of type boolean'),
    ("/networks/create", "{" + NET + '"Attachable": 0}',
     "invalid JSON: cannot unmarshal number 0 into field Attachable of type boolean"),
    ("/networks/create", "{" + NET + '"EnableIPv6": "no"}',
     'invalid JSON: cannot unmarshal string "no" into field EnableIPv6 of type boolean'),
    ("/networks/create", "{" + NET + '"IPAM": {"Config": ["10.60.0.0/24"]}}',
     'invalid JSON: cannot unmarshal string "10.60.0.0/24" into field IPAM.Config[0] of type '
     "object"),
    ("/networks/create", "{" + NET + '"IPAM": {"Config": [{"Subnet": "10.60.0.0/24", '
     '"Gateway": 1}]}}',
     "invalid JSON: cannot unmarshal number 1 into field IPAM.Config[0].Gateway of type "
     "string"),
    ("/networks/create", "{" + NET + '"IPAM": {"Config": [null]}}',
     "invalid JSON: cannot unmarshal null into field IPAM.Config[0] of type object"),
    ("/networks/create", "[]",
     "invalid JSON: cannot unmarshal array [] into the request body of type object"),
    ("/networks/create", '{"Name": "n1",',
     "invalid JSON: Expecting property name enclosed in double quotes: line 1 column 15 "
     "(char 14)"),
    ("/networks/asgard/connect", '{"Container": "env1", "EndpointConfig": {"Aliases": "a"}}',
     'invalid JSON: cannot unmarshal string "a" into field EndpointConfig.Aliases of type '
     "array"),
    ("/networks/asgard/connect", '{"Container": {"Id": "env1"}}',
     'invalid JSON: cannot unmarshal object {"Id": "env1"} into field Container of type '
     "string"),
    ("/networks/asgard/connect",
     '{"Container": "env1", "EndpointConfig": {"IPAMConfig": {"IPv4Address": 7}}}',
     "invalid JSON: cannot unmarshal number 7 into field EndpointConfig.IPAMConfig.IPv4Address "
     "of type string"),
    ("/networks/asgard/disconnect", '{"Container": "env1", "Force": "yes"}',
     'invalid JSON: cannot unmarshal string "yes" into field Force of type boolean'),
    ("/containers/create", '{"Cmd": "sleep 1"}',
     'invalid JSON: cannot unmarshal string "sleep 1" into field Cmd of type array'),
    ("/containers/create", '{"Cmd": ["true"], "Networks": [{"Network": 5}]}',
     "invalid JSON: cannot unmarshal number 5 into field Networks[0].Network of type string"),
    ("/containers/create", '{"Cmd": ["true"], "Dns": [1]}',
     "invalid JSON: cannot unmarshal number 1 into field Dns[0] of type string"),
    ("/containers/env1/started", '{"Pid": "1"}',
     'invalid JSON: cannot unmarshal string "1" into field Pid of type integer'),
    ("/containers/env1/exited", '{"ExitCode": 0.5}',
     "invalid JSON: cannot unmarshal number 0.5 into field ExitCode of type integer"),
    ("/containers/env1/stop?t=soon", None, "invalid t 'soon': not a number of seconds"),
]


@pytest.fixture
def prepared(env: Env) -> Env:
    env.run("network", "create", "--subnet", "10.50.0.0/24", "asgard")
    env.run("run", "-d", "--name", "env1", "--network", "asgard", "--", "sleep", "infinity")
    return env


def test_each_malformed_body_is_refused_and_changes_nothing(prepared: Env) -> None:
    """One daemon for the whole table (a daemon per case would cost a start each); every
    case is tried, and the failures are listed together."""
    wrong = []
    for target, body, message in CASES:
        before = snapshot(prepared.paths)
        answer = request(prepared.paths.socket, "POST", target,
                         body.encode() if body is not None else None)
        if answer != (400, {"message": message}):
            wrong.append((target, body, answer))
        if snapshot(prepared.paths) != before:
            wrong.append((target, body, "changed the record or the kernel"))
    assert wrong == []
