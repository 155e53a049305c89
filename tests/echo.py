"""An echo flow for the firewall's fast-path tests, as code for `python -c` in a namespace:
the flow runs while echoes come back, and its last line says what ended it."""

ECHO_PORT = 80
# Echoes what it reads, one connection at a time.
ECHO_SERVER = f"""
import socket
server = socket.create_server(("0.0.0.0", {ECHO_PORT}))
while True:
    conn, _ = server.accept()
    try:
        while data := conn.recv(65536):
            conn.sendall(data)
    except OSError:
        pass
    conn.close()
"""
# argv: ADDRESS PORT. One line per echo that came back; the error that ended the flow last.
ECHO_CLIENT = """
import socket, sys, time
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
try:
    while True:
        conn.sendall(b"x" * 1000)
        got = 0
        while got < 1000:
            chunk = conn.recv(1000 - got)
            if not chunk:
                raise ConnectionError("closed by the peer")
            got += len(chunk)
        print("echo", flush=True)
        time.sleep(0.02)
except OSError as exc:
    print("ended", type(exc).__name__, flush=True)
"""
