#!/usr/bin/env python3
"""A deliberately dumb BGP speaker for tests: it opens a session, then sends
exactly the bytes it is told to (malformed ones included) and reports every
message it receives as a JSON line. It is written from RFC 4271, independent
of kbgp's codec.

  raw_bgp.py --connect 192.0.2.2 --bind 192.0.2.3 --asn 65005 --id 192.0.2.3 \
      --step send:HEX --step sleep:1 ... --hold 5
"""
import argparse, json, socket, struct, sys, threading, time

def msg(t, body=b""):
    return b"\xff" * 16 + struct.pack("!HB", 19 + len(body), t) + body

def open_msg(asn, rid, hold):
    caps = bytes([1, 4, 0, 1, 0, 1, 1, 4, 0, 2, 0, 1])  # multiprotocol ipv4 and ipv6 unicast
    caps += bytes([65, 4]) + struct.pack("!I", asn)  # 4-octet AS
    param = bytes([2, len(caps)]) + caps
    my_as = asn if asn < 65536 else 23456
    body = struct.pack("!BHH", 4, my_as, hold) + socket.inet_aton(rid) + bytes([len(param)]) + param
    return msg(1, body)

def reader(sock, out, lock):
    buf = b""
    while True:
        try:
            data = sock.recv(65536)
        except OSError:
            break
        if not data:
            with lock:
                out.write(json.dumps({"event": "closed"}) + "\n"); out.flush()
            break
        buf += data
        while len(buf) >= 19:
            ln = struct.unpack("!H", buf[16:18])[0]
            if len(buf) < ln:
                break
            m, buf = buf[:ln], buf[ln:]
            rec = {"type": m[18], "hex": m.hex()}
            if m[18] == 3:
                rec["code"], rec["subcode"] = m[19], m[20]
            with lock:
                out.write(json.dumps(rec) + "\n"); out.flush()

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connect")
    ap.add_argument("--listen", help="accept one connection on this address instead of connecting")
    ap.add_argument("--port", type=int, default=179)
    ap.add_argument("--bind")
    ap.add_argument("--asn", type=int, required=True)
    ap.add_argument("--id", required=True)
    ap.add_argument("--step", action="append", default=[])
    ap.add_argument("--hold", type=float, default=5)
    a = ap.parse_args()
    if a.listen:
        fam = socket.AF_INET6 if ":" in a.listen else socket.AF_INET
        ls = socket.socket(fam, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((a.listen, a.port))
        ls.listen(1)
        ls.settimeout(30)
        s, _ = ls.accept()
    else:
        fam = socket.AF_INET6 if ":" in a.connect else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        if a.bind:
            s.bind((a.bind, 0))
        s.settimeout(10)
        s.connect((a.connect, a.port))
    s.settimeout(None)
    lock = threading.Lock()
    threading.Thread(target=reader, args=(s, sys.stdout, lock), daemon=True).start()
    s.sendall(open_msg(a.asn, a.id, 90))
    time.sleep(0.5)
    s.sendall(msg(4))
    time.sleep(0.5)
    for step in a.step:
        kind, _, arg = step.partition(":")
        if kind == "send":
            s.sendall(bytes.fromhex(arg))
        elif kind == "sleep":
            time.sleep(float(arg))
        s.sendall(msg(4)) if kind == "sleep" else None
    end = time.time() + a.hold
    while time.time() < end:
        try:
            s.sendall(msg(4))
        except OSError:
            break
        time.sleep(1)
    s.close()

if __name__ == "__main__":
    main()
