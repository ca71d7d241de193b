#!/usr/bin/env python3
"""A fake Kubernetes API server for kbgp's cluster-mode tests.

No kube-apiserver can be installed on the test machines, so this stands in for
one. It is not a mock of kbgp's client: it speaks the real HTTP API that any
client uses (kube-rs in kbgp, unchanged; Debian's or the image's `kubectl`):

- discovery: /version, /api, /api/v1, /apis, /apis/GROUP/VERSION (legacy
  discovery documents; clients that ask for aggregated discovery fall back);
- list with resourceVersion, labelSelector and fieldSelector (metadata.name,
  metadata.namespace, spec.nodeName);
- watch as a chunked stream of JSON events (ADDED/MODIFIED/DELETED/BOOKMARK),
  resumed from a resourceVersion, with `410 Gone` (an ERROR event, as the real
  server sends) for a version older than the compaction point;
- create (POST, generateName), replace (PUT, optimistic concurrency), delete,
  and PATCH as JSON merge patch, strategic merge patch (as a merge patch), JSON
  patch, and server-side apply (application/apply-patch+yaml), on the object
  or on its /status subresource;
- CustomResourceDefinitions: creating one serves its group/version/kind.

Test controls (not part of the Kubernetes API):
  POST /fake/compact    compact history: every open watch gets 410 Gone and
                        must relist
  GET  /fake/stats      counters (lists, watches, gone) as JSON

State is kept in memory and, with --state FILE, written after every change
and read at start, so a test can kill the server and start it again on the
same port (an API server outage).

  fake_apiserver.py --port 6443 [--host 0.0.0.0] [--state /tmp/x.json]
"""
import argparse
import copy
import json
import os
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

try:
    import yaml  # optional: only for YAML request bodies
except ImportError:  # pragma: no cover
    yaml = None

BUILTIN = [
    # group, version, plural, kind, namespaced, has status subresource
    ("", "v1", "nodes", "Node", False, True),
    ("", "v1", "namespaces", "Namespace", False, True),
    ("", "v1", "services", "Service", True, True),
    ("", "v1", "pods", "Pod", True, True),
    ("", "v1", "secrets", "Secret", True, False),
    ("", "v1", "configmaps", "ConfigMap", True, False),
    ("", "v1", "events", "Event", True, False),
    ("", "v1", "serviceaccounts", "ServiceAccount", True, False),
    ("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True, False),
    ("events.k8s.io", "v1", "events", "Event", True, False),
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions",
     "CustomResourceDefinition", False, True),
    ("apps", "v1", "daemonsets", "DaemonSet", True, True),
    ("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False, False),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False, False),
    ("rbac.authorization.k8s.io", "v1", "roles", "Role", True, False),
    ("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True, False),
]


def now_iso():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def merge_patch(target, patch):
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    out = dict(target)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def json_patch(doc, ops):
    """RFC 6902, the operations clients use: add, replace, remove, test."""
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent.setdefault(p, {})
        last = parts[-1] if parts else None
        kind = op["op"]
        if kind == "test":
            cur = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if cur != op.get("value"):
                raise ValueError("test failed at " + op["path"])
        elif kind in ("add", "replace"):
            if isinstance(parent, list):
                if last == "-":
                    parent.append(op["value"])
                elif kind == "add":
                    parent.insert(int(last), op["value"])
                else:
                    parent[int(last)] = op["value"]
            else:
                parent[last] = op["value"]
        elif kind == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            else:
                parent.pop(last, None)
        else:
            raise ValueError("unsupported JSON patch op " + kind)
    return doc


def status(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def label_match(labels, selector):
    if not selector:
        return True
    for term in selector.split(","):
        term = term.strip()
        if not term:
            continue
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.split("=", 1)
            k = k.strip().rstrip("=")
            if labels.get(k) != v.strip().lstrip("="):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def field_match(obj, selector):
    if not selector:
        return True
    md = obj.get("metadata", {})
    for term in selector.split(","):
        if "=" not in term:
            continue
        neg = "!=" in term
        k, v = term.split("!=" if neg else "=", 1)
        k, v = k.strip(), v.strip().lstrip("=")
        cur = {"metadata.name": md.get("name"),
               "metadata.namespace": md.get("namespace"),
               "spec.nodeName": (obj.get("spec") or {}).get("nodeName")}.get(k)
        if (cur == v) == neg:
            return False
    return True


class Store:
    def __init__(self, state_file=None):
        self.cond = threading.Condition()
        self.rv = 1
        self.min_rv = 1  # watches from an older version get 410 Gone
        self.objects = {}  # (group, plural, ns, name) -> object
        self.history = []  # (rv, type, key, object)
        self.resources = {}  # (group, version, plural) -> spec dict
        self.stats = {"lists": 0, "watches": 0, "gone": 0, "writes": 0}
        self.epoch = 0  # bumped by compaction: open watches end with 410
        self.state_file = state_file
        for g, v, p, k, ns, st in BUILTIN:
            self.resources[(g, v, p)] = {"kind": k, "namespaced": ns, "status": st,
                                         "crd": None}
        if state_file and os.path.exists(state_file):
            with open(state_file) as f:
                saved = json.load(f)
            self.rv = saved["rv"]
            self.min_rv = self.rv  # a restarted server has no watch history
            for o in saved["objects"]:
                self.objects[tuple(o["key"])] = o["object"]
            for key, obj in self.objects.items():
                if key[1] == "customresourcedefinitions":
                    self.register_crd(obj)

    def save(self):
        if not self.state_file:
            return
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"rv": self.rv, "objects": [{"key": list(k), "object": o}
                                                   for k, o in self.objects.items()]}, f)
        os.replace(tmp, self.state_file)

    def register_crd(self, crd):
        spec = crd.get("spec", {})
        g = spec.get("group", "")
        names = spec.get("names", {})
        for ver in spec.get("versions", []):
            if not ver.get("served", True):
                continue
            self.resources[(g, ver["name"], names.get("plural"))] = {
                "kind": names.get("kind"),
                "namespaced": spec.get("scope") == "Namespaced",
                "status": "status" in (ver.get("subresources") or {}),
                "crd": crd["metadata"]["name"],
                "shortNames": names.get("shortNames", []),
                "singular": names.get("singular", ""),
            }

    def unregister_crd(self, name):
        for k in [k for k, v in self.resources.items() if v.get("crd") == name]:
            del self.resources[k]

    def groups(self):
        out = {}
        for (g, v, _p) in self.resources:
            if g:
                out.setdefault(g, [])
                if v not in out[g]:
                    out[g].append(v)
        return out

    def record(self, etype, key, obj):
        """Called with the lock held."""
        self.history.append((self.rv, etype, key, copy.deepcopy(obj)))
        if len(self.history) > 10000:
            self.history = self.history[-5000:]
            self.min_rv = self.history[0][0]
        self.stats["writes"] += 1
        self.save()
        self.cond.notify_all()

    def next_rv(self):
        self.rv += 1
        return self.rv


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    store = None  # set in main
    server_version = "fake-apiserver/1"

    def log_message(self, fmt, *args):  # one short line per request
        sys.stderr.write("fake-apiserver: %s %s\n" % (self.command, self.path))

    # ---- helpers -------------------------------------------------------
    def send_json(self, code, obj, ctype="application/json"):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def fail(self, code, reason, message):
        self.send_json(code, status(code, reason, message))

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            if yaml is None:
                raise
            return yaml.safe_load(raw)

    def parse_path(self, path):
        """-> (group, version, ns, plural, name, sub) or None for non-resource paths."""
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["api"] and len(parts) >= 2:
            g, v, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            g, v, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        ns = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        elif len(rest) == 2 and rest[0] == "namespaces" and g == "":
            # /api/v1/namespaces/NAME is the namespace object itself.
            pass
        if not rest:
            return (g, v, ns, None, None, None)
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        return (g, v, ns, plural, name, sub)

    def api_version(self, g, v):
        return f"{g}/{v}" if g else v

    def decorate(self, obj, g, v, res):
        obj = copy.deepcopy(obj)
        obj["apiVersion"] = self.api_version(g, v)
        obj["kind"] = res["kind"]
        return obj

    # ---- verbs ---------------------------------------------------------
    def do_GET(self):
        u = urlparse(self.path)
        q = {k: v[-1] for k, v in parse_qs(u.query).items()}
        st = self.store
        if u.path in ("/healthz", "/readyz", "/livez"):
            body = b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if u.path == "/version":
            return self.send_json(200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake",
                                        "platform": "linux/amd64"})
        if u.path == "/fake/stats":
            with st.cond:
                return self.send_json(200, dict(st.stats, rv=st.rv, min_rv=st.min_rv))
        if u.path == "/openapi/v2":
            # An empty protobuf Document: valid, with no models (kubectl then
            # skips client-side schema checks for types it cannot look up).
            self.send_response(200)
            self.send_header("Content-Type", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if u.path == "/openapi/v3":
            with st.cond:
                gvs = sorted({(g, v) for (g, v, _p) in st.resources})
            return self.send_json(200, {"paths": {
                (f"apis/{g}/{v}" if g else f"api/{v}"): {
                    "serverRelativeURL": (f"/openapi/v3/apis/{g}/{v}" if g else f"/openapi/v3/api/{v}") + f"?hash={st.rv}"}
                for g, v in gvs}})
        if u.path.startswith("/openapi/v3/"):
            return self.openapi_gv(u.path[len("/openapi/v3/"):])
        if u.path == "/api":
            host = self.headers.get("Host", "127.0.0.1")
            return self.send_json(200, {"kind": "APIVersions", "versions": ["v1"],
                                        "serverAddressByClientCIDRs": [
                                            {"clientCIDR": "0.0.0.0/0", "serverAddress": host}]})
        if u.path == "/apis":
            with st.cond:
                groups = st.groups()
            return self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                 "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}}
                for g, vs in sorted(groups.items())]})
        parts = [x for x in u.path.split("/") if x]
        if len(parts) == 2 and parts[0] == "apis":
            with st.cond:
                vs = st.groups().get(parts[1])
            if not vs:
                return self.fail(404, "NotFound", f"group {parts[1]} not found")
            grp = parts[1]
            return self.send_json(200, {"kind": "APIGroup", "apiVersion": "v1", "name": grp,
                                        "versions": [{"groupVersion": f"{grp}/{x}", "version": x} for x in vs],
                                        "preferredVersion": {"groupVersion": f"{grp}/{vs[0]}", "version": vs[0]}})
        p = self.parse_path(u.path)
        if p is None:
            return self.fail(404, "NotFound", f"the server could not find the requested resource ({u.path})")
        g, v, ns, plural, name, sub = p
        if plural is None:
            return self.resource_list(g, v)
        with st.cond:
            res = st.resources.get((g, v, plural))
        if res is None:
            return self.fail(404, "NotFound", f"the server could not find the requested resource ({plural}.{g}/{v})")
        if name is not None:
            with st.cond:
                obj = st.objects.get((g, plural, ns if res["namespaced"] else None, name))
            if obj is None:
                return self.fail(404, "NotFound", f'{plural}.{g} "{name}" not found'.replace(". ", " "))
            return self.send_json(200, self.decorate(obj, g, v, res))
        if q.get("watch") in ("1", "true"):
            return self.watch(g, v, ns, plural, res, q)
        with st.cond:
            st.stats["lists"] += 1
            items = [self.decorate(o, g, v, res) for k, o in sorted(st.objects.items())
                     if k[0] == g and k[1] == plural and (ns is None or k[2] == ns)
                     and label_match(o.get("metadata", {}).get("labels") or {}, q.get("labelSelector"))
                     and field_match(o, q.get("fieldSelector"))]
            rv = st.rv
        for i in items:  # a real server leaves these out of list items
            i.pop("apiVersion", None)
            i.pop("kind", None)
        self.send_json(200, {"kind": res["kind"] + "List", "apiVersion": self.api_version(g, v),
                             "metadata": {"resourceVersion": str(rv)}, "items": items})

    def openapi_gv(self, rest):
        """A minimal OpenAPI v3 document for one group/version: each resource's
        PATCH operation with its GVK and the fieldValidation parameter (kubectl
        reads it to decide that the server validates fields)."""
        parts = rest.split("/")
        if parts[0] == "api" and len(parts) == 2:
            g, v = "", parts[1]
        elif parts[0] == "apis" and len(parts) == 3:
            g, v = parts[1], parts[2]
        else:
            return self.fail(404, "NotFound", "no such OpenAPI document")
        st = self.store
        with st.cond:
            rs = [(p, r) for (gg, vv, p), r in st.resources.items() if gg == g and vv == v]
        if not rs:
            return self.fail(404, "NotFound", "no such group/version")
        base = f"/apis/{g}/{v}" if g else f"/api/{v}"
        paths = {}
        for p, r in rs:
            path = f"{base}/namespaces/{{namespace}}/{p}/{{name}}" if r["namespaced"] else f"{base}/{p}/{{name}}"
            paths[path] = {"patch": {
                "x-kubernetes-group-version-kind": {"group": g, "version": v, "kind": r["kind"]},
                "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                               {"name": "fieldManager", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "OK"}}}}
        self.send_json(200, {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.0"},
                             "paths": paths, "components": {"schemas": {}}})

    def resource_list(self, g, v):
        st = self.store
        with st.cond:
            rs = [(p, r) for (gg, vv, p), r in st.resources.items() if gg == g and vv == v]
        if not rs:
            return self.fail(404, "NotFound", f"no resources for {self.api_version(g, v)}")
        out = []
        for p, r in sorted(rs):
            out.append({"name": p, "singularName": r.get("singular") or r["kind"].lower(),
                        "namespaced": r["namespaced"], "kind": r["kind"],
                        "shortNames": r.get("shortNames", []),
                        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]})
            if r["status"]:
                out.append({"name": p + "/status", "singularName": "", "namespaced": r["namespaced"],
                            "kind": r["kind"], "verbs": ["get", "patch", "update"]})
        self.send_json(200, {"kind": "APIResourceList", "apiVersion": "v1",
                             "groupVersion": self.api_version(g, v), "resources": out})

    def watch(self, g, v, ns, plural, res, q):
        st = self.store
        rv_s = q.get("resourceVersion", "")
        timeout = float(q.get("timeoutSeconds", "1800"))
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(obj):
            data = (json.dumps(obj) + "\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def matches(key, obj):
            return (key[0] == g and key[1] == plural and (ns is None or key[2] == ns)
                    and label_match(obj.get("metadata", {}).get("labels") or {}, q.get("labelSelector"))
                    and field_match(obj, q.get("fieldSelector")))

        try:
            with st.cond:
                st.stats["watches"] += 1
                epoch = st.epoch
                pending = []
                if rv_s in ("", "0"):
                    pos = st.rv
                    pending = [{"type": "ADDED", "object": self.decorate(o, g, v, res)}
                               for k, o in sorted(st.objects.items()) if matches(k, o)]
                else:
                    pos = int(rv_s)
                    if pos < st.min_rv:
                        st.stats["gone"] += 1
                        pending = None
            if pending is None:
                chunk({"type": "ERROR", "object": status(
                    410, "Expired", f"too old resource version: {rv_s} ({st.min_rv})")})
                self.wfile.write(b"0\r\n\r\n")
                return
            for e in pending:
                chunk(e)
            deadline = time.time() + timeout
            last_bookmark = time.time()
            while time.time() < deadline:
                with st.cond:
                    st.cond.wait(timeout=1.0)
                    if st.epoch != epoch:
                        st.stats["gone"] += 1
                        gone = True
                    else:
                        gone = False
                        events = [(rv, t, o) for rv, t, k, o in st.history
                                  if rv > pos and matches(k, o)]
                        top = st.rv
                if gone:
                    chunk({"type": "ERROR", "object": status(
                        410, "Expired", "too old resource version (compacted)")})
                    break
                for rv, t, o in events:
                    chunk({"type": t, "object": self.decorate(o, g, v, res)})
                pos = top
                if bookmarks and time.time() - last_bookmark > 5:
                    last_bookmark = time.time()
                    chunk({"type": "BOOKMARK", "object": {
                        "kind": res["kind"], "apiVersion": self.api_version(g, v),
                        "metadata": {"resourceVersion": str(pos)}}})
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def target(self, verb, want_object):
        """The request's resource path, checked: an object (PUT, PATCH,
        DELETE) or a collection (POST); None once an error is sent."""
        p = self.parse_path(urlparse(self.path).path)
        if p is None or p[3] is None or (p[4] is not None) != want_object:
            self.fail(405, "MethodNotAllowed",
                      f"{verb} needs {'an object' if want_object else 'a collection'}")
            return None
        return p

    def resource(self, g, v, plural):
        """The served resource (call with the store's lock held); None once a
        404 is sent."""
        res = self.store.resources.get((g, v, plural))
        if res is None:
            self.fail(404, "NotFound", f"no resource {plural} in {self.api_version(g, v)}")
        return res

    def do_POST(self):
        u = urlparse(self.path)
        st = self.store
        if u.path == "/fake/compact":
            with st.cond:
                st.min_rv = st.rv + 1
                st.epoch += 1
                st.history = []
                st.cond.notify_all()
            return self.send_json(200, {"compactedTo": st.min_rv})
        p = self.target("POST", want_object=False)
        if p is None:
            return
        g, v, ns, plural, _n, _s = p
        try:
            obj = self.body()
        except ValueError as e:
            return self.fail(400, "BadRequest", f"invalid body: {e}")
        with st.cond:
            res = self.resource(g, v, plural)
            if res is None:
                return
            md = obj.setdefault("metadata", {})
            if not md.get("name") and md.get("generateName"):
                md["name"] = md["generateName"] + uuid.uuid4().hex[:5]
            if not md.get("name"):
                return self.fail(422, "Invalid", "metadata.name: Required value")
            if res["namespaced"]:
                md["namespace"] = ns or md.get("namespace") or "default"
            else:
                md.pop("namespace", None)
            key = (g, plural, md.get("namespace"), md["name"])
            if key in st.objects:
                return self.fail(409, "AlreadyExists", f'{plural} "{md["name"]}" already exists')
            md["uid"] = str(uuid.uuid4())
            md["creationTimestamp"] = now_iso()
            md["generation"] = 1
            md["resourceVersion"] = str(st.next_rv())
            obj.pop("apiVersion", None)
            obj.pop("kind", None)
            st.objects[key] = obj
            if plural == "customresourcedefinitions":
                st.register_crd(obj)
                obj["status"] = {"conditions": [{"type": "Established", "status": "True"},
                                                {"type": "NamesAccepted", "status": "True"}],
                                 "acceptedNames": obj.get("spec", {}).get("names", {})}
            st.record("ADDED", key, obj)
            out = self.decorate(obj, g, v, res)
        self.send_json(201, out)

    def write_existing(self, method):
        st = self.store
        p = self.target(method, want_object=True)
        if p is None:
            return
        g, v, ns, plural, name, sub = p
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        try:
            body = self.body()
        except ValueError as e:
            return self.fail(400, "BadRequest", f"invalid body: {e}")
        with st.cond:
            res = self.resource(g, v, plural)
            if res is None:
                return
            nsk = (ns or "default") if res["namespaced"] else None
            key = (g, plural, nsk, name)
            cur = st.objects.get(key)
            created = False
            if method == "PUT":
                if cur is None:
                    return self.fail(404, "NotFound", f'{plural} "{name}" not found')
                want_rv = (body.get("metadata") or {}).get("resourceVersion")
                if want_rv and want_rv != cur["metadata"]["resourceVersion"]:
                    return self.fail(409, "Conflict", "the object has been modified; please apply your changes to the latest version and try again")
                new = copy.deepcopy(body)
                if sub == "status":
                    new = dict(cur, status=body.get("status"))
                elif res["status"] and "status" in cur:
                    new["status"] = cur["status"]
            else:  # PATCH
                if cur is None:
                    if ctype != "application/apply-patch+yaml":
                        return self.fail(404, "NotFound", f'{plural} "{name}" not found')
                    created = True
                    cur = {"metadata": {"name": name, "uid": str(uuid.uuid4()),
                                        "creationTimestamp": now_iso(), "generation": 1}}
                    if nsk:
                        cur["metadata"]["namespace"] = nsk
                try:
                    if ctype == "application/json-patch+json":
                        new = json_patch(cur, body)
                    else:
                        patch = copy.deepcopy(body)
                        patch.pop("apiVersion", None)
                        patch.pop("kind", None)
                        if sub == "status":
                            patch = {"status": patch.get("status")}
                        elif res["status"]:
                            patch.pop("status", None)
                        if ctype == "application/apply-patch+yaml":
                            # Server-side apply: the applied fields replace
                            # theirs (one field manager per field is enough here).
                            new = copy.deepcopy(cur)
                            for k, val in patch.items():
                                if k == "metadata":
                                    new["metadata"] = merge_patch(new["metadata"], val)
                                else:
                                    new[k] = val
                        else:
                            new = merge_patch(cur, patch)
                except (ValueError, KeyError, IndexError, TypeError) as e:
                    return self.fail(422, "Invalid", f"patch: {e}")
            new.pop("apiVersion", None)
            new.pop("kind", None)
            md = new.setdefault("metadata", {})
            for k in ("uid", "creationTimestamp", "name", "namespace"):
                if k in cur.get("metadata", {}):
                    md[k] = cur["metadata"][k]
            if new == cur and not created:
                out = self.decorate(cur, g, v, res)  # no-op: no new version, no event
            else:
                if new.get("spec") != cur.get("spec"):
                    md["generation"] = int(cur["metadata"].get("generation", 1)) + (0 if created else 1)
                md["resourceVersion"] = str(st.next_rv())
                st.objects[key] = new
                if plural == "customresourcedefinitions":
                    st.register_crd(new)
                st.record("ADDED" if created else "MODIFIED", key, new)
                out = self.decorate(new, g, v, res)
        self.send_json(201 if created else 200, out)

    def do_PUT(self):
        self.write_existing("PUT")

    def do_PATCH(self):
        self.write_existing("PATCH")

    def do_DELETE(self):
        st = self.store
        p = self.target("DELETE", want_object=True)
        if p is None:
            return
        g, v, ns, plural, name, _sub = p
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        with st.cond:
            res = self.resource(g, v, plural)
            if res is None:
                return
            key = (g, plural, (ns or "default") if res["namespaced"] else None, name)
            obj = st.objects.pop(key, None)
            if obj is None:
                return self.fail(404, "NotFound", f'{plural} "{name}" not found')
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(st.next_rv())
            if plural == "customresourcedefinitions":
                st.unregister_crd(name)
            st.record("DELETED", key, obj)
            out = self.decorate(obj, g, v, res)
        self.send_json(200, out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--state")
    a = ap.parse_args()
    Handler.store = Store(a.state)
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    srv = ThreadingHTTPServer((a.host, a.port), Handler)
    sys.stderr.write(f"fake-apiserver: listening on {a.host}:{a.port}\n")
    srv.serve_forever()


if __name__ == "__main__":
    main()
