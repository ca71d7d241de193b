#!/usr/bin/env python3
"""A deliberately dumb BGP speaker for tests: it opens a session, then sends
exactly the bytes it is told to (malformed ones included) and reports every
message it receives as a JSON line. It is written from RFC 4271, independent
of kbgp's codec.

  raw_bgp.py --connect 192.0.2.2 --bind 192.0.2.3 --asn 65005 --id 192.0.2.3 \
      --step send:HEX --step sleep:1 ... --hold 5

Steps: send:HEX (raw bytes), sleep:SECONDS, table:ROUND:START:COUNT (COUNT
IPv4 /32s from 198.18.0.0 + START, one UPDATE each with the large community
(ASN, ROUND, i), next hop the --bind address), withdraw:START:COUNT (the same
/32s).

--table FILE keeps what was received as an IPv4 table (prefix -> ROUND * 10^6
+ i of its first large community, or null) and
writes it to FILE as JSON every half second; --pause-read FILE stops reading
once the session is up (after the first KEEPALIVE) until FILE exists;
--rcvbuf sets SO_RCVBUF (a small one makes a peer that does not read fill
the sender's buffers quickly).
"""
import argparse, json, os, socket, struct, sys, threading, time

BASE = struct.unpack("!I", socket.inet_aton("198.18.0.0"))[0]

def host(i):
    return socket.inet_aton(socket.inet_ntoa(struct.pack("!I", BASE + i)))

def table_updates(asn, nh, rnd, start, count):
    origin = bytes([0x40, 1, 1, 0])
    as_path = bytes([0x40, 2, 6, 2, 1]) + struct.pack("!I", asn)
    next_hop = bytes([0x40, 3, 4]) + socket.inet_aton(nh)
    fixed = origin + as_path + next_hop
    out = []
    for i in range(start, start + count):
        attrs = fixed + bytes([0xC0, 32, 12]) + struct.pack("!III", asn, rnd, i)
        body = b"\0\0" + struct.pack("!H", len(attrs)) + attrs + bytes([32]) + host(i)
        out.append(msg(2, body))
    return b"".join(out)

def withdraw_updates(start, count):
    out = []
    for j in range(start, start + count, 500):
        w = b"".join(bytes([32]) + host(i) for i in range(j, min(j + 500, start + count)))
        out.append(msg(2, struct.pack("!H", len(w)) + w + b"\0\0"))
    return b"".join(out)

def prefixes(b):
    out, i = [], 0
    while i < len(b):
        ln = b[i]
        n = (ln + 7) // 8
        addr = b[i + 1:i + 1 + n] + bytes(4 - n)
        out.append("%s/%d" % (socket.inet_ntoa(addr), ln))
        i += 1 + n
    return out

def apply_update(table, m):
    wl = struct.unpack("!H", m[19:21])[0]
    for p in prefixes(m[21:21 + wl]):
        table.pop(p, None)
    al = struct.unpack("!H", m[21 + wl:23 + wl])[0]
    attrs, nlri = m[23 + wl:23 + wl + al], m[23 + wl + al:]
    tag, i = None, 0
    while i < len(attrs):
        flags, code = attrs[i], attrs[i + 1]
        if flags & 0x10:
            ln, hl = struct.unpack("!H", attrs[i + 2:i + 4])[0], 4
        else:
            ln, hl = attrs[i + 2], 3
        if code == 32 and ln >= 12:
            _, rnd, n = struct.unpack("!III", attrs[i + hl:i + hl + 12])
            tag = rnd * 1000000 + n
        i += hl + ln
    for p in prefixes(nlri):
        table[p] = tag

def msg(t, body=b""):
    return b"\xff" * 16 + struct.pack("!HB", 19 + len(body), t) + body

def open_msg(asn, rid, hold):
    caps = bytes([1, 4, 0, 1, 0, 1, 1, 4, 0, 2, 0, 1])  # multiprotocol ipv4 and ipv6 unicast
    caps += bytes([65, 4]) + struct.pack("!I", asn)  # 4-octet AS
    param = bytes([2, len(caps)]) + caps
    my_as = asn if asn < 65536 else 23456
    body = struct.pack("!BHH", 4, my_as, hold) + socket.inet_aton(rid) + bytes([len(param)]) + param
    return msg(1, body)

def reader(sock, out, lock, a):
    buf = b""
    table, dirty, last = {}, False, 0.0
    paused = bool(a.pause_read)
    def dump():
        tmp = a.table + ".tmp"
        with open(tmp, "w") as f:
            json.dump(table, f)
        os.replace(tmp, a.table)
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
            if a.table and m[18] == 2:
                apply_update(table, m)
                dirty = True
                continue
            rec = {"type": m[18], "hex": m.hex()}
            if m[18] == 3:
                rec["code"], rec["subcode"] = m[19], m[20]
            with lock:
                out.write(json.dumps(rec) + "\n"); out.flush()
            if m[18] == 4 and paused:
                with lock:
                    out.write(json.dumps({"event": "paused"}) + "\n"); out.flush()
                while not os.path.exists(a.pause_read):
                    time.sleep(0.2)
                paused = False
                with lock:
                    out.write(json.dumps({"event": "reading"}) + "\n"); out.flush()
        if a.table and dirty and time.time() - last > 0.5:
            dump()
            dirty, last = False, time.time()
        if a.table and dirty and not buf:
            # Nothing more may come for a while: write what there is.
            sock.settimeout(0.5)
            try:
                more = sock.recv(65536, socket.MSG_PEEK)
            except socket.timeout:
                more = None
            except OSError:
                more = b""
            sock.settimeout(None)
            if more is None or more == b"":
                dump()
                dirty, last = False, time.time()
    if a.table:
        dump()

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
    ap.add_argument("--table")
    ap.add_argument("--pause-read")
    ap.add_argument("--rcvbuf", type=int)
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
        if a.rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, a.rcvbuf)
        if a.bind:
            s.bind((a.bind, 0))
        s.settimeout(10)
        s.connect((a.connect, a.port))
    s.settimeout(None)
    lock = threading.Lock()
    threading.Thread(target=reader, args=(s, sys.stdout, lock, a), daemon=True).start()
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
        elif kind == "table":
            rnd, start, count = (int(x) for x in arg.split(":"))
            s.sendall(table_updates(a.asn, a.bind, rnd, start, count))
        elif kind == "withdraw":
            start, count = (int(x) for x in arg.split(":"))
            s.sendall(withdraw_updates(start, count))
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
