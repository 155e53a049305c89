"""The DNS codec, checked against the tests' own independent encoder/decoder (dnsprobe)."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dnsprobe import build_query, encode, parse_answer
from netbay.dns import message


def with_opt(packet: bytes, size: int) -> bytes:
    head = bytearray(packet)
    head[10:12] = struct.pack("!H", 1)
    return bytes(head) + b"\x00" + struct.pack("!HHIH", message.OPT, size, 0, 0)


def test_a_query_is_parsed_case_folded_with_its_question_kept() -> None:
    qid, packet = build_query("Env1.Asgard", "A")
    query = message.parse_query(packet)
    assert (query.id, query.name, query.qtype, query.qclass) == (qid, "env1.asgard", 1, 1)
    assert query.question == encode("Env1.Asgard") + struct.pack("!HH", 1, 1)
    assert (query.edns, query.udp_size) == (False, 512)


def test_edns_size_is_taken_within_bounds() -> None:
    _, packet = build_query("x.test", "A")
    assert message.parse_query(with_opt(packet, 4096)).udp_size == message.MAX_UDP
    assert message.parse_query(with_opt(packet, 100)).udp_size == 512
    assert message.parse_query(with_opt(packet, 1000)).edns


def test_an_answer_reads_back_with_the_id_flags_and_addresses() -> None:
    qid, packet = build_query("DB", "A")
    query = message.parse_query(packet)
    addresses = [IPv4Address("10.1.2.3").packed, IPv4Address("10.1.2.4").packed]
    out = message.response(query, message.NOERROR, [message.a_record(a) for a in addresses])
    parsed = parse_answer(out)
    assert parsed["id"] == qid
    assert parsed["rcode"] == "NOERROR"
    assert parsed["answers"] == ["10.1.2.3", "10.1.2.4"]
    assert set(parsed["flags"]) == {"aa", "rd", "ra"}
    assert out[12 : 12 + len(query.question)] == query.question  # the asker's case kept


def test_opt_is_echoed_only_when_asked() -> None:
    _, packet = build_query("x", "A")
    plain = message.response(message.parse_query(packet), message.NXDOMAIN)
    with_edns = message.response(message.parse_query(with_opt(packet, 1232)), message.NXDOMAIN)
    assert struct.unpack_from("!H", plain, 10)[0] == 0
    assert struct.unpack_from("!H", with_edns, 10)[0] == 1
    assert with_edns.endswith(b"\x00" + struct.pack("!HHIH", message.OPT, message.MAX_UDP, 0, 0))


def test_too_many_answers_for_udp_are_cut_and_flagged() -> None:
    _, packet = build_query("many", "A")
    query = message.parse_query(packet)
    answers = [message.a_record(IPv4Address(f"10.0.{i // 250}.{i % 250 + 1}").packed)
               for i in range(100)]
    out = message.response(query, message.NOERROR, answers, limit=query.udp_size)
    assert len(out) <= 512
    parsed = parse_answer(out)
    assert "tc" in parsed["flags"] and 0 < len(parsed["answers"]) < 100
    full = message.response(query, message.NOERROR, answers)
    assert len(parse_answer(full)["answers"]) == 100


def test_ptr_answers_name_the_target() -> None:
    _, packet = build_query("3.2.1.10.in-addr.arpa", "PTR")
    query = message.parse_query(packet)
    out = message.response(query, message.NOERROR, [message.ptr_record("env1.asgard")])
    assert parse_answer(out)["answers"] == ["env1.asgard"]


def test_reverse_names() -> None:
    assert message.reverse_name(IPv4Address("10.1.2.3")) == "3.2.1.10.in-addr.arpa"
    assert message.reverse_address("3.2.1.10.in-addr.arpa") == IPv4Address("10.1.2.3")
    for bad in ("2.1.10.in-addr.arpa", "x.2.1.10.in-addr.arpa", "300.2.1.10.in-addr.arpa",
                "3.2.1.10.ip6.arpa"):
        assert message.reverse_address(bad) is None


def test_responses_and_runts_are_not_queries() -> None:
    qid, packet = build_query("x", "A")
    response = bytearray(packet)
    response[2] |= 0x80
    with pytest.raises(message.NotAQuery):
        message.parse_query(bytes(response))
    with pytest.raises(message.NotAQuery):
        message.parse_query(packet[:11])


def test_malformed_queries_get_formerr_or_notimp() -> None:
    qid, packet = build_query("x", "A")
    two = bytearray(packet)
    two[4:6] = struct.pack("!H", 2)
    with pytest.raises(message.WireError) as exc:
        message.parse_query(bytes(two))
    assert exc.value.rcode == message.FORMERR
    status = bytearray(packet)
    status[2] |= 2 << 3  # opcode STATUS
    with pytest.raises(message.WireError) as exc:
        message.parse_query(bytes(status))
    assert exc.value.rcode == message.NOTIMP
    with pytest.raises(message.WireError):
        message.parse_query(packet[:-3])
    error = message.error_response(bytes(two), message.FORMERR)
    assert error is not None
    assert parse_answer(error)["rcode"] == "FORMERR" and parse_answer(error)["id"] == qid


def test_question_of_an_upstream_answer() -> None:
    _, packet = build_query("outside.test", "A")
    assert message.question_of(packet) == packet[12:]
    assert message.question_of(packet[:15]) is None


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_fail_cleanly(data: bytes) -> None:
    try:
        query = message.parse_query(data)
    except (message.NotAQuery, message.WireError):
        return
    out = message.response(query, message.NOERROR, limit=query.udp_size)
    assert out[:2] == data[:2]
