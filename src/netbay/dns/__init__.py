"""netbay's embedded DNS server: container names on bridge networks, other names forwarded.

message (the wire codec), records (who may resolve what, from the store), resolver (the
decision for one query), forward (upstream), server (the asyncio process), supervisor (the
daemon side: start, sync, restart). Importing this package stays light: the server process
imports only what it uses.
"""
