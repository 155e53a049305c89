"""Request bodies of the wrong JSON type, at any depth, are refused with one line naming the
field and the value (dockerd's "invalid JSON: ..." shape), before anything reads them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from netbay.daemon import docker_json
from netbay.daemon.json_shape import InvalidJson, decode_body
from netbay.errors import ConfigError, NetbayError

NET = {"Name": "x"}
CASES: list[tuple[Callable[[dict[str, Any]], object], dict[str, Any], str]] = [
    (docker_json.network_spec, {**NET, "IPAM": "bad"},
     'cannot unmarshal string "bad" into field IPAM of type object'),
    (docker_json.network_spec, {**NET, "Labels": {"a": 1}},
     "cannot unmarshal number 1 into field Labels.a of type string"),
    (docker_json.network_spec, {**NET, "Labels": ["a=b"]},
     'cannot unmarshal array ["a=b"] into field Labels of type object'),
    (docker_json.network_spec, {**NET, "Options": {"com.docker.network.driver.mtu": 1400}},
     "cannot unmarshal number 1400 into field Options.com.docker.network.driver.mtu of type "
     "string"),
    (docker_json.network_spec, {"Name": 5}, "cannot unmarshal number 5 into field Name of type "
     "string"),
    (docker_json.network_spec, {**NET, "Driver": ["bridge"]},
     'cannot unmarshal array ["bridge"] into field Driver of type string'),
    (docker_json.network_spec, {**NET, "Internal": "yes"},
     'cannot unmarshal string "yes" into field Internal of type boolean'),
    (docker_json.network_spec, {**NET, "Attachable": 1},
     "cannot unmarshal number 1 into field Attachable of type boolean"),
    (docker_json.network_spec, {**NET, "EnableIPv6": "false"},
     'cannot unmarshal string "false" into field EnableIPv6 of type boolean'),
    (docker_json.network_spec, {**NET, "IPAM": {"Config": {"Subnet": "10.9.0.0/24"}}},
     'cannot unmarshal object {"Subnet": "10.9.0.0/24"} into field IPAM.Config of type array'),
    (docker_json.network_spec, {**NET, "IPAM": {"Config": ["10.9.0.0/24"]}},
     'cannot unmarshal string "10.9.0.0/24" into field IPAM.Config[0] of type object'),
    (docker_json.network_spec, {**NET, "IPAM": {"Config": [{"Subnet": 10}]}},
     "cannot unmarshal number 10 into field IPAM.Config[0].Subnet of type string"),
    (docker_json.network_spec,
     {**NET, "IPAM": {"Config": [{"Subnet": "10.9.0.0/24", "AuxiliaryAddresses": {"r": None}}]}},
     "cannot unmarshal null into field IPAM.Config[0].AuxiliaryAddresses.r of type string"),
    (docker_json.network_spec, {**NET, "IPAM": {"Options": []}},
     "cannot unmarshal array [] into field IPAM.Options of type object"),
    (docker_json.network_spec, {**NET, "ConfigFrom": "other"},
     'cannot unmarshal string "other" into field ConfigFrom of type object'),
    (docker_json.network_spec, {**NET, "Labels": {"long": "x" * 100, "n": 1.5}},
     "cannot unmarshal number 1.5 into field Labels.n of type string"),
    (docker_json.attach_request, {"Container": 5},
     "cannot unmarshal number 5 into field Container of type string"),
    (docker_json.attach_request, {"Container": "c", "EndpointConfig": "x"},
     'cannot unmarshal string "x" into field EndpointConfig of type object'),
    (docker_json.attach_request, {"Container": "c", "EndpointConfig": {"Aliases": "web"}},
     'cannot unmarshal string "web" into field EndpointConfig.Aliases of type array'),
    (docker_json.attach_request,
     {"Container": "c", "EndpointConfig": {"IPAMConfig": {"IPv4Address": 10}}},
     "cannot unmarshal number 10 into field EndpointConfig.IPAMConfig.IPv4Address of type "
     "string"),
    (docker_json.attach_request, {"Container": "c", "EndpointConfig": {"IPPrefixLen": 24.5}},
     "cannot unmarshal number 24.5 into field EndpointConfig.IPPrefixLen of type integer"),
    (docker_json.detach_request, {"Container": "c", "Force": "yes"},
     'cannot unmarshal string "yes" into field Force of type boolean'),
    (docker_json.container_spec, {"Cmd": "sleep 1"},
     'cannot unmarshal string "sleep 1" into field Cmd of type array'),
    (docker_json.container_spec, {"Cmd": ["true", 1]},
     "cannot unmarshal number 1 into field Cmd[1] of type string"),
    (docker_json.container_spec, {"Cmd": ["true"], "Networks": ["asgard"]},
     'cannot unmarshal string "asgard" into field Networks[0] of type object'),
    (docker_json.container_spec, {"Cmd": ["true"], "Env": {"A": "1"}},
     'cannot unmarshal object {"A": "1"} into field Env of type array'),
    (docker_json.container_spec, {"Cmd": ["true"], "Publish": [8080]},
     "cannot unmarshal number 8080 into field Publish[0] of type string"),
    (docker_json.started_pid, {"Pid": "12"},
     'cannot unmarshal string "12" into field Pid of type integer'),
    (docker_json.started_pid, {"Pid": 2**64},
     "cannot unmarshal number 18446744073709551616 into field Pid of type integer"),
    (docker_json.exit_code, {"ExitCode": True},
     "cannot unmarshal bool true into field ExitCode of type integer"),
]


@pytest.mark.parametrize(("parse", "body", "message"), CASES,
                         ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(CASES)])
def test_wrong_types_name_the_field_and_the_value(
    parse: Callable[[dict[str, Any]], object], body: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse(body)
    assert str(err.value) == "invalid JSON: " + message
    assert err.value.http_status == 400


def test_long_values_are_cut_to_keep_one_short_line() -> None:
    with pytest.raises(ConfigError) as err:
        docker_json.network_spec({**NET, "Name": ["x" * 200]})
    assert str(err.value) == ('invalid JSON: cannot unmarshal array ["' + "x" * 55 + "... "
                              "into field Name of type string")


def test_what_the_docker_client_sends_still_parses() -> None:
    """Nulls and empty objects where a field is unset, and fields netbay does not read."""
    spec = docker_json.network_spec({
        "Name": "x", "CheckDuplicate": True, "Driver": "bridge", "Scope": "", "EnableIPv6":
        None, "IPAM": {"Driver": "default", "Options": None, "Config": None}, "Internal": False,
        "Attachable": False, "Ingress": False, "ConfigOnly": False, "ConfigFrom": None,
        "Options": {}, "Labels": None, "Unknown": [1, {"deep": True}],
    })
    assert (spec.name, spec.driver, spec.subnets, spec.labels) == ("x", "bridge", (), {})
    container, ip, aliases = docker_json.attach_request({
        "Container": "c", "EndpointConfig": {"IPAMConfig": None, "Links": None,
                                             "Aliases": ["web"], "DriverOpts": None,
                                             "GwPriority": 0, "MacAddress": ""}})
    assert (container, ip, aliases) == ("c", None, ("web",))
    assert docker_json.detach_request({"Container": "c", "Force": False}) == ("c", False)
    assert docker_json.started_pid({"Pid": 4242}) == 4242
    assert docker_json.exit_code({"ExitCode": None}) is None


def test_a_missing_container_on_disconnect_is_docker_s_404() -> None:
    with pytest.raises(NetbayError) as err:
        docker_json.detach_request({})
    assert (err.value.http_status, str(err.value)) == (404, "a container is required")


@pytest.mark.parametrize(("value", "seconds"), [(None, 10.0), ("0", 0.0), ("2.5", 2.5)])
def test_stop_seconds(value: str | None, seconds: float) -> None:
    assert docker_json.stop_seconds(value) == seconds


@pytest.mark.parametrize("value", ["abc", "-1", "inf", "nan", ""])
def test_stop_seconds_refused(value: str) -> None:
    with pytest.raises(ConfigError) as err:
        docker_json.stop_seconds(value)
    assert str(err.value) == f"invalid t {value!r}: not a number of seconds"


@pytest.mark.parametrize(("raw", "message"), [
    (b"[1]", "invalid JSON: cannot unmarshal array [1] into the request body of type object"),
    (b'"x"', 'invalid JSON: cannot unmarshal string "x" into the request body of type object'),
    (b"{", "invalid JSON: Expecting property name enclosed in double quotes: line 1 column 2 "
           "(char 1)"),
    (b'{"a": Infinity}', "invalid JSON: Infinity is not JSON"),
    (b"[" * 100_000, "invalid JSON: maximum recursion depth exceeded while decoding a JSON "
                     "array from a unicode string"),
])
def test_bodies_that_are_not_one_object(raw: bytes, message: str) -> None:
    with pytest.raises((InvalidJson, ConfigError)) as err:
        decode_body(raw)
    assert str(err.value) == message
    assert err.value.http_status == 400


def test_an_empty_body_is_no_body() -> None:
    assert decode_body(b"") is None and decode_body(b" \r\n") is None
    assert decode_body(b'{"a": 1}') == {"a": 1}
