"""Seeing the network: topology pictures, packet path traces, capture, doctor, RPS.

Pure modules (topology, draw, hops: a trace's hops, nft_events: trace events decoded,
doctor, rps, capture) interpret and render; the daemon-side modules (facts, probe, observer,
tracer, health, steering) read the
kernel in the daemon's host namespace and hand plain records to them. The thin CLI imports
only the pure ones.
"""
