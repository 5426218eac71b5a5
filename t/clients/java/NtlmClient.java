// OpenJDK's built-in NTLM (HttpURLConnection + Authenticator): GET or POST
// with a body, then a follow-up GET on the kept-alive connection.
//   java NtlmClient.java URL DOMAIN\\USER PASSWORD [POST-BODY]
// prints: "final <status> <X-Kcd-User>" and "follow <status>"

import java.io.InputStream;
import java.io.OutputStream;
import java.net.Authenticator;
import java.net.HttpURLConnection;
import java.net.PasswordAuthentication;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.security.cert.X509Certificate;
import javax.net.ssl.HttpsURLConnection;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManager;
import javax.net.ssl.X509TrustManager;

public class NtlmClient {
    public static void main(String[] a) throws Exception {
        final String user = a[1], pw = a[2];
        Authenticator.setDefault(new Authenticator() {
            protected PasswordAuthentication getPasswordAuthentication() {
                return new PasswordAuthentication(user, pw.toCharArray());
            }
        });
        TrustManager[] all = { new X509TrustManager() {
            public X509Certificate[] getAcceptedIssuers() { return null; }
            public void checkClientTrusted(X509Certificate[] c, String t) {}
            public void checkServerTrusted(X509Certificate[] c, String t) {}
        } };
        SSLContext ssl = SSLContext.getInstance("TLS");
        ssl.init(null, all, null);
        HttpsURLConnection.setDefaultSSLSocketFactory(ssl.getSocketFactory());
        HttpsURLConnection.setDefaultHostnameVerifier((h, s) -> true);

        HttpURLConnection c = (HttpURLConnection) new URL(a[0]).openConnection();
        if (a.length > 3) {
            c.setRequestMethod("POST");
            c.setDoOutput(true);
            try (OutputStream o = c.getOutputStream()) {
                o.write(a[3].getBytes(StandardCharsets.UTF_8));
            }
        }
        int s = c.getResponseCode();
        try (InputStream in = s < 400 ? c.getInputStream() : c.getErrorStream()) {
            if (in != null) in.readAllBytes();
        }
        System.out.println("final " + s + " " + c.getHeaderField("X-Kcd-User"));

        HttpURLConnection f = (HttpURLConnection) new URL(a[0] + "again").openConnection();
        int fs = f.getResponseCode();
        try (InputStream in = fs < 400 ? f.getInputStream() : f.getErrorStream()) {
            if (in != null) in.readAllBytes();
        }
        System.out.println("follow " + fs);
    }
}
