"""A registry that insists on token authentication (as Docker Hub and
GHCR do), serving one OCI layout: /v2/ answers 401 with a Bearer
challenge naming /token, which hands out a token for the right Basic
credentials only. Usage: fake_registry.py LAYOUT USER PASSWORD
(prints the port it listens on, on 127.0.0.1)."""
import base64, http.server, json, os, sys

layout, user, password = sys.argv[1], sys.argv[2], sys.argv[3]
TOKEN = "tok-" + os.urandom(8).hex()
index = json.load(open(os.path.join(layout, "index.json")))
manifest_digest = index["manifests"][0]["digest"]


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def send(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        port = self.server.server_address[1]
        if self.path.startswith("/token"):
            want = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            if self.headers.get("Authorization") != want or "scope=repository" not in self.path:
                return self.send(401)
            return self.send(200, json.dumps({"token": TOKEN}).encode(), [("Content-Type", "application/json")])
        if self.headers.get("Authorization") != "Bearer " + TOKEN:
            challenge = f'Bearer realm="http://127.0.0.1:{port}/token",service="fake",scope="repository:private/bb:pull"'
            return self.send(401, b"{}", [("WWW-Authenticate", challenge)])
        parts = self.path.split("/")
        if self.path.startswith("/v2/private/bb/manifests/"):
            body = open(os.path.join(layout, "blobs/sha256", manifest_digest[7:]), "rb").read()
            return self.send(200, body, [("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
                                         ("Docker-Content-Digest", manifest_digest)])
        if self.path.startswith("/v2/private/bb/blobs/sha256:"):
            p = os.path.join(layout, "blobs/sha256", parts[-1][7:])
            if os.path.exists(p):
                return self.send(200, open(p, "rb").read(), [("Content-Type", "application/octet-stream")])
        self.send(404, b"{}")

    def log_message(self, *a):
        pass


class Quiet(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass


s = Quiet(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
