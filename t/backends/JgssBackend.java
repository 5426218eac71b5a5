/*
 * Kerberos-protected HTTP backend on OpenJDK's own Kerberos (JGSS): run by
 * t/lib/KcdAcceptor.pm.
 *
 *   java JgssBackend.java PORT KEYTAB PRINCIPAL [PKCS12 PASSWORD]
 *
 * JAAS Krb5LoginModule logs the acceptor in from the keytab; every request
 * gets a fresh GSSContext (GSSManager, SPNEGO and krb5 credentials) that
 * must be established by its one "Authorization: Negotiate" token.  With a
 * PKCS#12 key store the server speaks TLS and enforces channel binding
 * (GSSContext.setChannelBinding: RFC 5929 tls-server-end-point of its own
 * certificate; needs --add-exports
 * java.security.jgss/sun.security.jgss.krb5.internal=ALL-UNNAMED): a
 * token without the binding or with another one is refused.
 *
 * Answer: 200 "user=<principal> method=<M> len=<n> port=<client port>
 * acceptor=jgss mech=<oid>", header X-Remote-User; 401 with
 * X-Acceptor-Error when the context is refused.
 */

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import com.sun.net.httpserver.HttpsConfigurator;
import com.sun.net.httpserver.HttpsServer;

import java.io.FileInputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.security.KeyStore;
import java.security.MessageDigest;
import java.security.PrivilegedExceptionAction;
import java.security.cert.X509Certificate;
import java.util.Base64;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.Executors;

import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.security.auth.Subject;
import javax.security.auth.login.AppConfigurationEntry;
import javax.security.auth.login.Configuration;
import javax.security.auth.login.LoginContext;

import org.ietf.jgss.GSSContext;
import org.ietf.jgss.GSSCredential;
import org.ietf.jgss.GSSManager;
import org.ietf.jgss.Oid;

import sun.security.jgss.krb5.internal.TlsChannelBindingImpl;

public class JgssBackend {

    static Subject subject;
    static GSSCredential acceptor;
    static byte[] binding;            /* null: plain HTTP, no binding */

    public static void main(String[] a) throws Exception {
        int port = Integer.parseInt(a[0]);
        final String keytab = a[1];
        final String principal = a[2];

        Configuration.setConfiguration(new Configuration() {
            public AppConfigurationEntry[] getAppConfigurationEntry(String n) {
                Map<String, String> o = new HashMap<>();
                o.put("useKeyTab", "true");
                o.put("keyTab", keytab);
                o.put("principal", principal);
                o.put("storeKey", "true");
                o.put("isInitiator", "false");
                o.put("doNotPrompt", "true");
                return new AppConfigurationEntry[] {
                    new AppConfigurationEntry(
                        "com.sun.security.auth.module.Krb5LoginModule",
                        AppConfigurationEntry.LoginModuleControlFlag.REQUIRED,
                        o)
                };
            }
        });

        LoginContext lc = new LoginContext("kcd");
        lc.login();
        subject = lc.getSubject();

        final GSSManager m = GSSManager.getInstance();
        acceptor = Subject.doAs(subject,
            (PrivilegedExceptionAction<GSSCredential>) () ->
                m.createCredential(null, GSSCredential.INDEFINITE_LIFETIME,
                    new Oid[] { new Oid("1.3.6.1.5.5.2"),
                                new Oid("1.2.840.113554.1.2.2") },
                    GSSCredential.ACCEPT_ONLY));

        HttpServer s;

        if (a.length > 3) {
            char[] pw = a[4].toCharArray();
            KeyStore ks = KeyStore.getInstance("PKCS12");
            try (InputStream in = new FileInputStream(a[3])) {
                ks.load(in, pw);
            }
            String alias = ks.aliases().nextElement();
            X509Certificate cert = (X509Certificate) ks.getCertificate(alias);

            /* RFC 5929 4.1: the certificate's signature hash (SHA-256 here;
               MD5 and SHA-1 would become SHA-256 too) */
            byte[] h = MessageDigest.getInstance("SHA-256")
                           .digest(cert.getEncoded());
            byte[] p = "tls-server-end-point:"
                           .getBytes(StandardCharsets.US_ASCII);
            binding = new byte[p.length + h.length];
            System.arraycopy(p, 0, binding, 0, p.length);
            System.arraycopy(h, 0, binding, p.length, h.length);

            KeyManagerFactory kmf = KeyManagerFactory.getInstance("SunX509");
            kmf.init(ks, pw);
            SSLContext ssl = SSLContext.getInstance("TLS");
            ssl.init(kmf.getKeyManagers(), null, null);
            HttpsServer hs = HttpsServer.create(
                new InetSocketAddress("127.0.0.1", port), 64);
            hs.setHttpsConfigurator(new HttpsConfigurator(ssl));
            s = hs;

        } else {
            s = HttpServer.create(new InetSocketAddress("127.0.0.1", port),
                                  64);
        }

        s.createContext("/", JgssBackend::handle);
        s.setExecutor(Executors.newFixedThreadPool(8));
        s.start();
        System.out.println("listening " + port);
    }

    static void answer(HttpExchange x, int status, String body)
        throws java.io.IOException
    {
        byte[] b = body.getBytes(StandardCharsets.UTF_8);
        x.getResponseHeaders().set("Content-Type", "text/plain");
        x.sendResponseHeaders(status, b.length);
        try (OutputStream o = x.getResponseBody()) {
            o.write(b);
        }
    }

    static void handle(HttpExchange x) throws java.io.IOException {
        byte[] body;
        try (InputStream in = x.getRequestBody()) {
            body = in.readAllBytes();
        }

        String auth = x.getRequestHeaders().getFirst("Authorization");
        if (auth == null || !auth.startsWith("Negotiate ")) {
            x.getResponseHeaders().set("WWW-Authenticate", "Negotiate");
            answer(x, 401, "no token\n");
            return;
        }

        GSSContext ctx = null;
        try {
            final byte[] token = Base64.getDecoder().decode(
                auth.substring(10).trim());
            ctx = GSSManager.getInstance().createContext(acceptor);
            if (binding != null) {
                /*
                 * The JDK's own TLS binding (what its HTTPS client sends to
                 * IIS with jdk.https.negotiate.cbt): address types 0, as
                 * Windows SSPI and MIT hash them.  The public
                 * ChannelBinding(byte[]) hashes 255 (GSS_C_AF_NULLADDR)
                 * for the absent addresses, which no Windows peer sends.
                 */
                ctx.setChannelBinding(new TlsChannelBindingImpl(binding));
            }
            final GSSContext c = ctx;
            Subject.doAs(subject, (PrivilegedExceptionAction<byte[]>) () ->
                c.acceptSecContext(token, 0, token.length));
            if (!ctx.isEstablished()) {
                throw new Exception("context not established by one token");
            }
            String user = ctx.getSrcName().toString();
            x.getResponseHeaders().set("X-Remote-User", user);
            answer(x, 200, "user=" + user + " method="
                   + x.getRequestMethod() + " len=" + body.length
                   + " port=" + x.getRemoteAddress().getPort()
                   + " acceptor=jgss mech=" + ctx.getMech() + "\n");

        } catch (Throwable e) {
            Throwable t = e.getCause() != null ? e.getCause() : e;
            String msg = String.valueOf(t.getMessage()).replaceAll("[\r\n]",
                                                                   " ");
            System.out.println("refused: " + msg);
            x.getResponseHeaders().set("X-Acceptor-Error", msg);
            answer(x, 401, "refused\n");

        } finally {
            if (ctx != null) {
                try {
                    ctx.dispose();
                } catch (Exception e) {
                    /* nothing to do */
                }
            }
        }
    }
}
