"""The DNS codec, checked against the tests' own independent encoder/decoder (dnsprobe)."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dnsprobe import build_query, encode, parse_answer
from netbay.dns import wire


def with_opt(packet: bytes, size: int) -> bytes:
    head = bytearray(packet)
    head[10:12] = struct.pack("!H", 1)
    return bytes(head) + b"\x00" + struct.pack("!HHIH", wire.OPT, size, 0, 0)


def test_a_query_is_parsed_case_folded_with_its_question_kept() -> None:
    qid, packet = build_query("Env1.Asgard", "A")
    query = wire.parse_query(packet)
    assert (query.id, query.name, query.qtype, query.qclass) == (qid, "env1.asgard", 1, 1)
    assert query.question == encode("Env1.Asgard") + struct.pack("!HH", 1, 1)
    assert (query.edns, query.udp_size) == (False, 512)


def test_edns_size_is_taken_within_bounds() -> None:
    _, packet = build_query("x.test", "A")
    assert wire.parse_query(with_opt(packet, 4096)).udp_size == wire.MAX_UDP
    assert wire.parse_query(with_opt(packet, 100)).udp_size == 512
    assert wire.parse_query(with_opt(packet, 1000)).edns


def test_an_answer_reads_back_with_the_id_flags_and_addresses() -> None:
    qid, packet = build_query("DB", "A")
    query = wire.parse_query(packet)
    addresses = [IPv4Address("10.1.2.3").packed, IPv4Address("10.1.2.4").packed]
    out = wire.response(query, wire.NOERROR, [wire.a_record(a) for a in addresses])
    parsed = parse_answer(out)
    assert parsed["id"] == qid
    assert parsed["rcode"] == "NOERROR"
    assert parsed["answers"] == ["10.1.2.3", "10.1.2.4"]
    assert set(parsed["flags"]) == {"aa", "rd", "ra"}
    assert out[12 : 12 + len(query.question)] == query.question  # the asker's case kept


def test_opt_is_echoed_only_when_asked() -> None:
    _, packet = build_query("x", "A")
    plain = wire.response(wire.parse_query(packet), wire.NXDOMAIN)
    with_edns = wire.response(wire.parse_query(with_opt(packet, 1232)), wire.NXDOMAIN)
    assert struct.unpack_from("!H", plain, 10)[0] == 0
    assert struct.unpack_from("!H", with_edns, 10)[0] == 1
    assert with_edns.endswith(b"\x00" + struct.pack("!HHIH", wire.OPT, wire.MAX_UDP, 0, 0))


def test_too_many_answers_for_udp_are_cut_and_flagged() -> None:
    _, packet = build_query("many", "A")
    query = wire.parse_query(packet)
    answers = [wire.a_record(IPv4Address(f"10.0.{i // 250}.{i % 250 + 1}").packed)
               for i in range(100)]
    out = wire.response(query, wire.NOERROR, answers, limit=query.udp_size)
    assert len(out) <= 512
    parsed = parse_answer(out)
    assert "tc" in parsed["flags"] and 0 < len(parsed["answers"]) < 100
    full = wire.response(query, wire.NOERROR, answers)
    assert len(parse_answer(full)["answers"]) == 100


def test_ptr_answers_name_the_target() -> None:
    _, packet = build_query("3.2.1.10.in-addr.arpa", "PTR")
    query = wire.parse_query(packet)
    out = wire.response(query, wire.NOERROR, [wire.ptr_record("env1.asgard")])
    assert parse_answer(out)["answers"] == ["env1.asgard"]


def test_reverse_names() -> None:
    assert wire.reverse_name(IPv4Address("10.1.2.3")) == "3.2.1.10.in-addr.arpa"
    assert wire.reverse_address("3.2.1.10.in-addr.arpa") == IPv4Address("10.1.2.3")
    for bad in ("2.1.10.in-addr.arpa", "x.2.1.10.in-addr.arpa", "300.2.1.10.in-addr.arpa",
                "3.2.1.10.ip6.arpa"):
        assert wire.reverse_address(bad) is None


def test_responses_and_runts_are_not_queries() -> None:
    qid, packet = build_query("x", "A")
    response = bytearray(packet)
    response[2] |= 0x80
    with pytest.raises(wire.NotAQuery):
        wire.parse_query(bytes(response))
    with pytest.raises(wire.NotAQuery):
        wire.parse_query(packet[:11])


def test_malformed_queries_get_formerr_or_notimp() -> None:
    qid, packet = build_query("x", "A")
    two = bytearray(packet)
    two[4:6] = struct.pack("!H", 2)
    with pytest.raises(wire.WireError) as exc:
        wire.parse_query(bytes(two))
    assert exc.value.rcode == wire.FORMERR
    status = bytearray(packet)
    status[2] |= 2 << 3  # opcode STATUS
    with pytest.raises(wire.WireError) as exc:
        wire.parse_query(bytes(status))
    assert exc.value.rcode == wire.NOTIMP
    with pytest.raises(wire.WireError):
        wire.parse_query(packet[:-3])
    error = wire.error_response(bytes(two), wire.FORMERR)
    assert error is not None
    assert parse_answer(error)["rcode"] == "FORMERR" and parse_answer(error)["id"] == qid


def test_question_of_an_upstream_answer() -> None:
    _, packet = build_query("outside.test", "A")
    assert wire.question_of(packet) == packet[12:]
    assert wire.question_of(packet[:15]) is None


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_fail_cleanly(data: bytes) -> None:
    try:
        query = wire.parse_query(data)
    except (wire.NotAQuery, wire.WireError):
        return
    out = wire.response(query, wire.NOERROR, limit=query.udp_size)
    assert out[:2] == data[:2]
