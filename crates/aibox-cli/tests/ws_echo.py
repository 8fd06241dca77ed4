"""A WebSocket echo server with the standard library only (RFC 6455, text
and binary frames up to 64 KiB), for the published-port tests. It answers
plain HTTP GETs with 'plain' so one port serves both checks.
Usage: ws_echo.py PORT"""
import base64, hashlib, socket, struct, sys, threading

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def read_exact(c, n):
    b = b""
    while len(b) < n:
        part = c.recv(n - len(b))
        if not part:
            raise EOFError
        b += part
    return b


def serve(c):
    try:
        head = b""
        while b"\r\n\r\n" not in head:
            part = c.recv(4096)
            if not part:
                return
            head += part
        lines = head.split(b"\r\n")
        headers = {}
        for line in lines[1:]:
            if b":" in line:
                k, v = line.split(b":", 1)
                headers[k.strip().lower()] = v.strip()
        key = headers.get(b"sec-websocket-key")
        if key is None:
            path = lines[0].split(b" ")[1]
            body = b"cookies " + headers.get(b"cookie", b"") if path == b"/cookies" else b"plain " + path
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            return
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        while True:
            b0, b1 = read_exact(c, 2)
            op, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", read_exact(c, 2))[0]
            elif n == 127:
                n = struct.unpack(">Q", read_exact(c, 8))[0]
            mask = read_exact(c, 4) if b1 & 0x80 else b"\0\0\0\0"
            data = bytes(x ^ mask[i % 4] for i, x in enumerate(read_exact(c, n)))
            if op == 8:
                c.sendall(b"\x88\x00")
                return
            if op in (1, 2):
                hdr = bytes([0x80 | op])
                hdr += bytes([len(data)]) if len(data) < 126 else b"\x7e" + struct.pack(">H", len(data))
                c.sendall(hdr + data)
    except (EOFError, OSError):
        pass
    finally:
        c.close()


s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(16)
while True:
    conn, _ = s.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
