"""
Kerberos-protected HTTP backend on Samba's acceptor (Heimdal, as bundled
with Samba): run by t/lib/KcdAcceptor.pm with /usr/bin/python3.

    heimdal_backend.py PORT KEYTAB DIR LIBGSSAPI_SAMBA4

Every request must carry "Authorization: Negotiate <token>".  The token
goes to Samba's gensec (mechanism "spnego", which hands the Kerberos
token inside to its "krb5" mechanism; the keytab through a private
secrets.ldb), and the client principal is read from the same Heimdal
GSS-API library (gss_accept_sec_context + gss_display_name): gensec's
session_info needs an AD PAC, which an MIT KDC does not issue.

Answer: 200 "user=<principal> method=<M> len=<body length> port=<client
port> acceptor=heimdal", header X-Remote-User; 401 with X-Acceptor-Error
when either acceptor refuses.  Keep-alive (HTTP/1.1), one thread per
connection, every request authenticated on its own.
"""

import base64
import ctypes
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from samba import Ldb, auth, gensec
from samba.credentials import MUST_USE_KERBEROS, Credentials
from samba.param import LoadParm

port, keytab, workdir = int(sys.argv[1]), sys.argv[2], sys.argv[3]

# Samba's own Heimdal GSS-API library, the one its gensec calls
HEIMDAL_GSSAPI = sys.argv[4]

os.makedirs(workdir + "/private", exist_ok=True)
with open(workdir + "/smb.conf", "w") as f:
    f.write("[global]\n")

lp = LoadParm()
lp.load(workdir + "/smb.conf")
lp.set("private dir", workdir + "/private")
lp.set("workgroup", "KCD")
lp.set("realm", "KCD.TEST")
lp.set("server role", "standalone server")

# the acceptor's keytab, the way Samba finds a machine account's
secrets = workdir + "/private/secrets.ldb"
if not os.path.exists(secrets):
    Ldb(secrets, lp=lp).add({
        "dn": "flatname=KCD,CN=Primary Domains",
        "objectClass": ["top", "primaryDomain", "kerberosSecret"],
        "flatname": "KCD",
        "realm": "KCD.TEST",
        "samAccountName": "HTTP/backend.kcd.test",
        "krb5Keytab": "FILE:" + keytab,
        "whenChanged": "20260101000000.0Z",
    })

creds = Credentials()
creds.guess(lp)
creds.set_machine_account(lp)
creds.set_kerberos_state(MUST_USE_KERBEROS)


class GssBuf(ctypes.Structure):
    _fields_ = [("length", ctypes.c_size_t), ("value", ctypes.c_void_p)]


heimdal = ctypes.CDLL(HEIMDAL_GSSAPI)
heimdal.gss_accept_sec_context.restype = ctypes.c_uint32
heimdal.gss_display_name.restype = ctypes.c_uint32
heimdal.gsskrb5_register_acceptor_identity(keytab.encode())

lock = threading.Lock()


def gensec_accept(token):
    s = gensec.Security.start_server(
        settings={"lp_ctx": lp, "target_hostname": "backend.kcd.test"},
        auth_context=auth.AuthContext(lp_ctx=lp))
    s.set_credentials(creds)
    s.start_mech_by_name("spnego")
    done, _ = s.update(token)
    if not done:
        raise ValueError("gensec wants another round trip")


def heimdal_principal(token):
    minor = ctypes.c_uint32(0)
    ctx = ctypes.c_void_p(None)
    src = ctypes.c_void_p(None)
    out = GssBuf()
    name = GssBuf()
    data = ctypes.create_string_buffer(token, len(token))
    inb = GssBuf(len(token), ctypes.cast(data, ctypes.c_void_p))
    major = heimdal.gss_accept_sec_context(
        ctypes.byref(minor), ctypes.byref(ctx), None, ctypes.byref(inb),
        None, ctypes.byref(src), None, ctypes.byref(out), None, None, None)
    if major != 0:
        raise ValueError("gss_accept_sec_context major 0x%x minor %d"
                         % (major, minor.value))
    major = heimdal.gss_display_name(ctypes.byref(minor), src,
                                     ctypes.byref(name), None)
    if major != 0:
        raise ValueError("gss_display_name major 0x%x" % major)
    return ctypes.string_at(name.value, name.length).decode()


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
            with lock:
                gensec_accept(token)
                user = heimdal_principal(token)
        except Exception as e:
            return self.answer(401, "refused\n",
                               [("X-Acceptor-Error", str(e)[:200])])
        self.answer(200, "user=%s method=%s len=%d port=%d acceptor=heimdal\n"
                    % (user, self.command, len(body),
                       self.client_address[1]),
                    [("X-Remote-User", user)])

    do_GET = do_POST = do_PUT = handle_any


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
