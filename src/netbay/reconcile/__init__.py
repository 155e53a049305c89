"""The reconciler: netbay's kernel state kept as the record says, all the time.

    state.py    what netbay wants in a namespace (Desired) and what is there (Observed)
    compare.py  desired vs observed: the drifts, each with its fix or none (reported only)
    fixes.py    the fixes, as values, and RepairTarget (where they land)
    ledger.py   repairs counted per kind, a key that keeps drifting backed off (flapping)
    session.py  one pass: compare without the kernel lock, repair under it, in rounds
    watch.py    the events that say "look now" (rtnetlink, netconf, nftables)
    loop.py     the daemon's thread: events debounced, a periodic resync, the passes
    fake.py     the reconciler's kernel verbs on netbay.testing's FakeKernel

Level-triggered: an event only says when to look; every pass is the same full comparison
of the record's desired state with the kernel's, so a lost event costs a delay, never a
repair. Drivers declare their networks' desired state (the `desired` verb, pure); the
engine's part (engine/reconcile.py) adds what it owns itself (hairpin, nftables) and
applies the fixes. The kernel side (kernel/linux.py observe and the repair verbs) reads
on a socket of its own, without the kernel lock; only repairs take it.
"""
