/*
 * NTLM cryptography (MS-NLMP 3.3.2, 3.1.5.1.2): NTOWFv2, NTProofStr,
 * session key, MIC, channel bindings.  OpenSSL libcrypto (HMAC-MD5, MD5,
 * SHA-2); MD4 for NT hashes of Basic passwords is our own (RFC 1320): the
 * OpenSSL 3 legacy provider is never loaded.  No nginx types.
 */

#ifndef _NGX_HTTP_KCD_NTLM_CRYPTO_H_INCLUDED_
#define _NGX_HTTP_KCD_NTLM_CRYPTO_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/* NT hash = MD4(UTF-16LE(password)); password is UTF-8. 0 or -1 */
int kcd_ntlm_nt_hash(const char *password, size_t len, uint8_t hash[16]);

/* RFC 1320 */
void kcd_md4(const uint8_t *data, size_t len, uint8_t digest[16]);

/*
 * NTOWFv2 = HMAC-MD5(nt_hash, UTF16LE(UPPER(user)) || domain), user and
 * domain given as UTF-16LE exactly as the client sent them.
 */
int kcd_ntlm_ntowfv2(const uint8_t nt_hash[16], const uint8_t *user,
    size_t user_len, const uint8_t *domain, size_t domain_len,
    uint8_t ntowf[16]);

/*
 * Verify an NTLMv2 response with a known NT hash: NTProofStr compared in
 * constant time; retried once with an empty domain (MS-NLMP 3.2.5.1.2).
 * On success fills the session base key (= exported session key, we never
 * negotiate KEY_EXCH) and returns 0; -1 when the proof does not match.
 */
int kcd_ntlm_verify_v2(const uint8_t nt_hash[16], const uint8_t *user,
    size_t user_len, const uint8_t *domain, size_t domain_len,
    const uint8_t server_challenge[8], const uint8_t *nt_response,
    size_t nt_len, uint8_t session_key[16]);

/*
 * MIC = HMAC-MD5(session key, Type1 || Type2 || Type3 with bytes 72..87
 * zeroed); compared in constant time with mic (16 bytes).  0 or -1.
 */
int kcd_ntlm_verify_mic(const uint8_t session_key[16],
    const uint8_t *negotiate, size_t negotiate_len,
    const uint8_t *challenge, size_t challenge_len,
    const uint8_t *authenticate, size_t authenticate_len,
    const uint8_t mic[16]);

/*
 * MsvAvChannelBindings for TLS: MD5(Z(16) || u32le(len) || appdata) with
 * appdata = "tls-server-end-point:" || H(cert DER), H the certificate's
 * signature hash, MD5/SHA-1 upgraded to SHA-256 (RFC 5929 4.1).
 * cert_der: DER of the server certificate.  0 or -1.
 */
int kcd_ntlm_tls_cb_hash(const uint8_t *cert_der, size_t cert_len,
    uint8_t out[16]);

/*
 * Strict UTF-8 decoder (RFC 3629): the code point at *pos, *pos advanced;
 * -1 on invalid input.  *pos must be < len.
 */
long kcd_ntlm_utf8_next(const uint8_t *s, size_t len, size_t *pos);

/* constant-time compare, 0 when equal */
int kcd_ntlm_memcmp_ct(const void *a, const void *b, size_t len);

/* wipe secrets */
void kcd_ntlm_wipe(void *p, size_t len);


#endif /* _NGX_HTTP_KCD_NTLM_CRYPTO_H_INCLUDED_ */
