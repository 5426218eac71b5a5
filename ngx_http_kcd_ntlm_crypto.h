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

/*
 * kcd_ntlm_rc4_init: loads RC4 from OpenSSL's legacy provider into a
 * private OSSL_LIB_CTX (never into the default context nginx's TLS uses).
 * Idempotent, thread-safe; 0, or -1 when the legacy provider is missing.
 * Only KEY_EXCH needs it.
 */
int kcd_ntlm_rc4_init(void);

/*
 * kcd_ntlm_exported_session_key: MS-NLMP 3.2.5.1.2 / 3.3.2.  flags: the
 * negotiated flags; key_exchange_key: for NTLMv2 the session base key.
 * With KEY_EXCH: RC4K(KeyExchangeKey, encrypted) (encrypted: the Type 3
 * EncryptedRandomSessionKey, 16 bytes); without: the KeyExchangeKey.
 * 0 or -1.
 */
int kcd_ntlm_exported_session_key(uint32_t flags,
    const uint8_t key_exchange_key[16], const uint8_t *encrypted,
    size_t encrypted_len, uint8_t exported[16]);


/* NTLM session security of an acceptor, MS-NLMP 3.4 (signing only) */

typedef struct {
    uint8_t         sign_key[16];
    uint32_t        seq;
    void           *rc4;              /* EVP_CIPHER_CTX with KEY_EXCH */
} kcd_ntlm_sec_dir_t;

typedef struct {
    uint32_t             flags;
    kcd_ntlm_sec_dir_t   client;      /* client-to-server: verify */
    kcd_ntlm_sec_dir_t   server;      /* server-to-client: sign */
} kcd_ntlm_sec_t;

/*
 * kcd_ntlm_sec_init: signing keys (MS-NLMP 3.4.5.2) and, with KEY_EXCH,
 * the RC4 sealing handles (3.4.5.3) of both directions from the exported
 * session key; sequence numbers start at 0.  Needs extended session
 * security (ESS) in flags: -1 without it.  Release with kcd_ntlm_sec_free().
 */
int kcd_ntlm_sec_init(kcd_ntlm_sec_t *sec, uint32_t flags,
    const uint8_t exported[16]);

/*
 * kcd_ntlm_sec_verify / kcd_ntlm_sec_sign: the 16-byte NTLMSSP_MESSAGE_
 * SIGNATURE (MS-NLMP 3.4.4.2) of msg from the client (verified in constant
 * time: 0 or -1) and to the client (written to sig: 0 or -1).  Each call
 * advances its direction's sequence number.  The SPNEGO mechListMIC is
 * the first such signature in each direction (RFC 4178 5).
 */
int kcd_ntlm_sec_verify(kcd_ntlm_sec_t *sec, const uint8_t *msg, size_t len,
    const uint8_t *sig, size_t sig_len);
int kcd_ntlm_sec_sign(kcd_ntlm_sec_t *sec, const uint8_t *msg, size_t len,
    uint8_t sig[16]);
void kcd_ntlm_sec_free(kcd_ntlm_sec_t *sec);

/* constant-time compare, 0 when equal */
int kcd_ntlm_memcmp_ct(const void *a, const void *b, size_t len);

/* wipe secrets */
void kcd_ntlm_wipe(void *p, size_t len);


#endif /* _NGX_HTTP_KCD_NTLM_CRYPTO_H_INCLUDED_ */
