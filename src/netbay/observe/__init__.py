"""Seeing the network: topology pictures, packet path traces, capture, doctor, RPS.

Pure modules (topology, draw, trace, nftrace decoding, doctor, rps, capture) interpret and
render; the daemon-side modules (facts, probe, service, tracing, health, steering) read the
kernel in the daemon's host namespace and hand plain records to them. The thin CLI imports
only the pure ones.
"""
