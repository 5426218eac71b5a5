"""
TLS backend that enforces Kerberos channel binding with MIT's acceptor
(python3-gssapi: gss_accept_sec_context with input_chan_bindings): run by
t/lib/KcdAcceptor.pm with /usr/bin/python3.

    mit_cb_backend.py PORT KEYTAB CERT KEY

The binding is RFC 5929 tls-server-end-point of its own certificate
(SHA-256: the test certificates are signed with it).  MIT checks a
binding that the authenticator carries (a wrong one: the context fails)
and says whether one was there (GSS_C_CHANNEL_BOUND_FLAG); this backend,
like IIS with Extended Protection "Require", refuses a token without one.

Answer: 200 "user=<principal> method=<M> len=<n> port=<client port>
acceptor=mit-cb", header X-Remote-User; 401 with X-Acceptor-Error.
"""

import base64
import hashlib
import os
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import gssapi
import gssapi.raw

port, keytab, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], \
    sys.argv[4]

os.environ["KRB5_KTNAME"] = "FILE:" + keytab

with open(cert) as f:
    der = ssl.PEM_cert_to_DER_cert(f.read())

BINDING = gssapi.raw.ChannelBindings(
    application_data=b"tls-server-end-point:" + hashlib.sha256(der).digest())

CREDS = gssapi.Credentials(usage="accept")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s\n" % (fmt % args))

    def answer(self, status, body, headers=()):
        body = body.encode()
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        a = self.headers.get("Authorization") or ""
        if not a.startswith("Negotiate "):
            return self.answer(401, "no token\n",
                               [("WWW-Authenticate", "Negotiate")])
        try:
            token = base64.b64decode(a[10:], validate=True)
            ctx = gssapi.SecurityContext(creds=CREDS, usage="accept",
                                         channel_bindings=BINDING)
            ctx.step(token)
            if not ctx.complete:
                raise ValueError("context not established by one token")
            if gssapi.RequirementFlag.channel_bound not in ctx.actual_flags:
                raise ValueError("token carries no channel binding")
            user = str(ctx.initiator_name)
        except Exception as e:
            msg = " ".join(str(e).split())[:200]
            sys.stderr.write("refused: %s\n" % msg)
            return self.answer(401, "refused\n",
                               [("X-Acceptor-Error", msg)])
        self.answer(200, "user=%s method=%s len=%d port=%d acceptor=mit-cb\n"
                    % (user, self.command, len(body),
                       self.client_address[1]),
                    [("X-Remote-User", user)])

    do_GET = do_POST = do_PUT = handle_any


tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
tls.load_cert_chain(cert, key)

ThreadingHTTPServer.daemon_threads = True
httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
httpd.serve_forever()
