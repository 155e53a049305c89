"""The text of netbay's two nftables tables, their sets empty (plan/firewall.py fills them).

IPv6 has its twin of each address set and of each rule that matches an address (`subnets6`
beside `subnets`, `ip6 daddr` beside `ip daddr`); the rules that match on interfaces alone
(isolation, internal networks, ICC) hold for both families. The IPv4 rules come first in
each chain, so an IPv4 packet meets exactly the lookups it met before IPv6: a rule of the
other family fails on its first comparison (the packet's family).
"""

from __future__ import annotations

from .overlay_model import TUNNEL_PREFIX

TABLE = "netbay"
INET, BRIDGE = "inet", "bridge"
FLOWTABLE = "ft"
HOOK = "hook ingress priority filter;"
# the forward chain's first rule where the kernel has flowtables (`fast_path`); the state
# first: it fails at once for the untracked bridged packets that the next rule accepts
OFFLOAD = f"ct state established iifname @bridges meta l4proto {{ tcp, udp }} flow add @{FLOWTABLE}"
# One transaction that makes and drops a flowtable: refused by a kernel without flowtables.
FLOWTABLE_PROBE = f"""\
add table {INET} netbay_probe
add flowtable {INET} netbay_probe {FLOWTABLE} {{ {HOOK} devices = {{ "lo" }}; }}
delete table {INET} netbay_probe"""

SKELETON = """\
table inet netbay {
  set bridges { type ifname; }
  set internal { type ifname; }
  set same_bridge { type ifname . ifname; }
  set subnets { type ipv4_addr; flags interval; }
  set subnets6 { type ipv6_addr; flags interval; }
  set masq_nets { type ipv4_addr; flags interval; }
  set masq_nets6 { type ipv6_addr; flags interval; }
  map snat_nets { type ipv4_addr : ipv4_addr; flags interval; }
  set overlay_pools { type ipv4_addr; flags interval; }
  set overlay_own { type ifname . ipv4_addr; flags interval; }
  set routed_pools { type ipv4_addr; flags interval; }
  set same_pool { type ipv4_addr . ipv4_addr; flags interval; }
  set overlay_pools6 { type ipv6_addr; flags interval; }
  set overlay_own6 { type ifname . ipv6_addr; flags interval; }
  set routed_pools6 { type ipv6_addr; flags interval; }
  set same_pool6 { type ipv6_addr . ipv6_addr; flags interval; }
  set routed_in6 { type ifname . ipv6_addr; flags interval; }
  map pub_any { type inet_proto . inet_service : ipv4_addr . inet_service; }
  map pub_ip { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }
  map pub_any6 { type inet_proto . inet_service : ipv6_addr . inet_service; }
  map pub_ip6 { type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service; }

  chain raw_prerouting {
    type filter hook prerouting priority raw; policy accept;
    # 127.0.0.0/8 only ever comes from lo: a neighbour routing it to us gets nothing
    ip daddr 127.0.0.0/8 iifname != "lo" drop
    # (an accept ends only this chain: what follows is IPv6's)
    meta nfproto ipv4 accept
    ip6 daddr ::1 iifname != "lo" drop
    # a routed container (its veth's host end: a bridge's ports are seen as the bridge)
    # sends only from an address routed back to that veth; IPv4 has rp_filter for that,
    # IPv6 has none
    meta nfproto ipv6 iifname "nbv*" fib saddr . iif oif missing drop
  }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @pub_ip
    fib daddr type local dnat ip to meta l4proto . th dport map @pub_any
    fib daddr type local dnat ip6 to ip6 daddr . meta l4proto . th dport map @pub_ip6
    fib daddr type local dnat ip6 to meta l4proto . th dport map @pub_any6
  }
  chain output {
    type nat hook output priority -100; policy accept;
    fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @pub_ip
    fib daddr type local dnat ip to meta l4proto . th dport map @pub_any
    fib daddr type local dnat ip6 to ip6 daddr . meta l4proto . th dport map @pub_ip6
    # not ::1: the container's reply to ::1 would come in on a bridge, where the kernel
    # drops it (IPv6 has no route_localnet); the host's [::1] gets "connection refused"
    ip6 daddr != ::1 fib daddr type local dnat ip6 to meta l4proto . th dport map @pub_any6
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    # a container reaching a published port (its own: hairpin): the reply must come back
    # through the host to be un-NATed
    ct status dnat ip saddr @subnets oifname @bridges masquerade
    ct status dnat ip6 saddr @subnets6 oifname @bridges masquerade
    # the host's own 127.0.0.1 reaching a published port
    ip saddr 127.0.0.0/8 oifname @bridges masquerade
    # a cluster-wide network's containers reach its containers on other nodes as themselves
    ip saddr @overlay_pools ip daddr @overlay_pools accept
    ip6 saddr @overlay_pools6 ip6 daddr @overlay_pools6 accept
    oifname != @bridges snat ip to ip saddr map @snat_nets
    oifname != @bridges ip saddr @masq_nets masquerade
    # NAT66, as Docker 27 (not for a network with gateway_mode_ipv6=routed)
    oifname != @bridges ip6 saddr @masq_nets6 masquerade
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    # container to container on one bridge (untracked: the bridge table's prerouting), the
    # most packets of all; first, since it never leaves by a tunnel
    iifname . oifname @same_bridge accept
    # into a tunnel (a routed network's veths have the underlay's MTU: plan/routed.veth_mtu):
    # both ends' SYNs say the MSS the tunnel carries (a SYN-ACK is already "established")
    tcp flags syn oifname @TUNNELS tcp option maxseg size set rt mtu
    # a flow's first packet walks the rules below; the rest are accepted by its state (a
    # change that would drop a running flow ends its conntrack entry)
    ct state established,related accept
    # a cluster-wide network: its own pool's traffic between this node's bridge and the
    # other nodes (tunnel or underlay), and no other network's
    oifname . ip saddr @overlay_own accept
    iifname . ip daddr @overlay_own accept
    iifname @bridges ip daddr @overlay_pools drop
    oifname . ip6 saddr @overlay_own6 accept
    iifname . ip6 daddr @overlay_own6 accept
    iifname @bridges ip6 daddr @overlay_pools6 drop
    # a routed network (no bridge to name): its own pool's traffic, and no other network's
    ip saddr . ip daddr @same_pool accept
    ip saddr @routed_pools ip daddr @overlay_pools drop
    ip daddr @routed_pools ip saddr @overlay_pools drop
    ip6 saddr . ip6 daddr @same_pool6 accept
    ip6 saddr @routed_pools6 ip6 daddr @overlay_pools6 drop
    ip6 daddr @routed_pools6 ip6 saddr @overlay_pools6 drop
    iifname @internal drop
    oifname @internal drop
    ct status dnat oifname @bridges accept
    # gateway_mode_ipv6=routed: the network's IPv6 containers are reached at their own
    # addresses from outside, and still from no other container network
    iifname != @bridges oifname . ip6 daddr @routed_in6 accept
    # anything else into a container network: other networks, routed-in neighbours
    oifname @bridges drop
  }
}
table bridge netbay {
  set ports { type ifname; }
  set endpoints { type ifname . ether_addr . ipv4_addr; }
  set endpoints6 { type ifname . ether_addr . ipv6_addr; }
  set nd_targets6 { typeof iifname . ether saddr . @th,64,128; }
  set icc_off_ports { type ifname; }

  chain prerouting {
    type filter hook prerouting priority filter; policy accept;
    # anti-spoofing: a container's port passes only its own MAC and IPv4 address (the
    # common case first: one lookup for a container's IPv4 packet). A frame to another
    # container ("other": not the bridge's MAC; the bridge marks its own "host" before this
    # hook) is bridged, never routed: nothing to NAT or remember, so it skips conntrack in
    # the inet hooks br_netfilter hands it to. A frame to the bridge's MAC (the gateway, a
    # published port, hairpin, the host's services) stays tracked.
    meta pkttype other iifname . ether saddr . ip saddr @endpoints notrack accept
    iifname . ether saddr . ip saddr @endpoints accept
    iifname != @ports accept
    iifname . ether saddr . arp saddr ip @endpoints accept
    # IPv6: a container is no router (no advertisements, no redirects) and advertises
    # only its own addresses as a neighbour: the target (the 16 bytes after the ICMPv6
    # header's 8; nft 1.0.6 has no name for it) is one of its global and link-local ones.
    # (`icmpv6` is found by the kernel's own header walk: extension headers hide nothing)
    icmpv6 type { nd-router-advert, nd-redirect } drop
    # nor a multicast listener: the bridge has no querier, so it floods all multicast
    # anyway, and each MLD report a new container sends would be flooded to every port,
    # work that grew with the containers on the bridge (dual-stack attach 3 -> 8-15 ms
    # over 1,000 containers)
    icmpv6 type { mld-listener-query, mld-listener-report, mld2-listener-report,
                  mld-listener-done } drop
    icmpv6 type nd-neighbor-advert iifname . ether saddr . @th,64,128 != @nd_targets6 drop
    meta pkttype other iifname . ether saddr . ip6 saddr @endpoints6 notrack accept
    iifname . ether saddr . ip6 saddr @endpoints6 accept
    drop
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname @icc_off_ports drop
  }
}
""".replace("@TUNNELS", f'"{TUNNEL_PREFIX}*"')
