/*
 * NTLM message codec (MS-NLMP 2.2): parse NEGOTIATE and AUTHENTICATE,
 * build CHALLENGE, check an AUTHENTICATE against the CHALLENGE it answers.
 * No nginx types: unit-tested on its own with the MS-NLMP 4.2 vectors.
 */

#ifndef _NGX_HTTP_KCD_NTLM_H_INCLUDED_
#define _NGX_HTTP_KCD_NTLM_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <time.h>


#define KCD_NTLM_MAX_MSG                 65536     /* as Samba */
#define KCD_NTLM_CHALLENGE_TTL           (30 * 60) /* seconds, as Samba */

#define KCD_NTLM_NEGOTIATE_UNICODE       0x00000001
#define KCD_NTLM_NEGOTIATE_OEM           0x00000002
#define KCD_NTLM_REQUEST_TARGET          0x00000004
#define KCD_NTLM_NEGOTIATE_SIGN          0x00000010
#define KCD_NTLM_NEGOTIATE_SEAL          0x00000020
#define KCD_NTLM_NEGOTIATE_DATAGRAM      0x00000040
#define KCD_NTLM_NEGOTIATE_LM_KEY        0x00000080
#define KCD_NTLM_NEGOTIATE_NTLM          0x00000200
#define KCD_NTLM_NEGOTIATE_ANONYMOUS     0x00000800
#define KCD_NTLM_NEGOTIATE_ALWAYS_SIGN   0x00008000
#define KCD_NTLM_TARGET_TYPE_DOMAIN      0x00010000
#define KCD_NTLM_TARGET_TYPE_SERVER      0x00020000
#define KCD_NTLM_NEGOTIATE_ESS           0x00080000
#define KCD_NTLM_NEGOTIATE_TARGET_INFO   0x00800000
#define KCD_NTLM_NEGOTIATE_VERSION       0x02000000
#define KCD_NTLM_NEGOTIATE_128           0x20000000
#define KCD_NTLM_NEGOTIATE_KEY_EXCH      0x40000000
#define KCD_NTLM_NEGOTIATE_56            0x80000000

#define KCD_NTLM_AV_EOL                  0
#define KCD_NTLM_AV_NB_COMPUTER          1
#define KCD_NTLM_AV_NB_DOMAIN            2
#define KCD_NTLM_AV_DNS_COMPUTER         3
#define KCD_NTLM_AV_DNS_DOMAIN           4
#define KCD_NTLM_AV_DNS_TREE             5
#define KCD_NTLM_AV_FLAGS                6
#define KCD_NTLM_AV_TIMESTAMP            7
#define KCD_NTLM_AV_TARGET_NAME          9
#define KCD_NTLM_AV_CHANNEL_BINDINGS     10

#define KCD_NTLM_AV_FLAG_MIC             0x00000002

/* kcd_channel_binding policy */
#define KCD_NTLM_CB_OFF                  0
#define KCD_NTLM_CB_ALLOW                1
#define KCD_NTLM_CB_REQUIRE              2

/* return codes */
#define KCD_NTLM_OK                      0
#define KCD_NTLM_ERROR                  -1    /* malformed: answer 400 */
#define KCD_NTLM_DENIED                 -2    /* well formed, refused: 401 */


/* 1, 2 or 3 for an NTLMSSP message of that type, -1 otherwise */
int kcd_ntlm_message_type(const uint8_t *msg, size_t len);


typedef struct {
    uint32_t        flags;
} kcd_ntlm_negotiate_t;

/*
 * Parse a NEGOTIATE (Type 1). *err gets a static reason on failure.
 * KCD_NTLM_ERROR: malformed; KCD_NTLM_DENIED: OEM-only client.
 */
int kcd_ntlm_parse_negotiate(const uint8_t *msg, size_t len,
    kcd_ntlm_negotiate_t *neg, const char **err);


typedef struct {
    uint32_t        client_flags;     /* flags of the client's Type 1 */
    uint8_t         challenge[8];     /* from a CSPRNG */
    uint64_t        timestamp;        /* FILETIME: 100 ns since 1601 UTC */
    const char     *nb_domain;        /* ASCII/UTF-8, mandatory */
    const char     *nb_computer;      /* mandatory */
    const char     *dns_domain;       /* optional, NULL if unset */
    const char     *dns_computer;     /* optional, NULL if unset */
    int             key_exch;         /* grant KEY_EXCH when asked */
} kcd_ntlm_challenge_params_t;

/*
 * Build a CHALLENGE (Type 2) into out; returns its length, or -1 if outlen
 * is too small.  Flags (MS-NLMP 3.2.5.1.1): NTLM, UNICODE, TARGET_INFO,
 * REQUEST_TARGET, TARGET_TYPE_DOMAIN, VERSION always; ESS, ALWAYS_SIGN,
 * 128, 56 and SIGN when the client asks for them (SIGN: the SPNEGO
 * mechListMIC and clients such as gss-ntlmssp that require integrity);
 * KEY_EXCH when asked and p->key_exch; never LM_KEY, DATAGRAM, ANONYMOUS
 * or SEAL (no confidentiality is ever provided over HTTP).
 */
long kcd_ntlm_build_challenge(const kcd_ntlm_challenge_params_t *p,
    uint8_t *out, size_t outlen);


typedef struct {
    uint32_t        flags;
    const uint8_t  *lm;               /* pointers into the message */
    size_t          lm_len;
    const uint8_t  *nt;               /* whole NTLMv2 response */
    size_t          nt_len;
    const uint8_t  *domain;           /* UTF-16LE, as sent */
    size_t          domain_len;
    const uint8_t  *user;             /* UTF-16LE, as sent */
    size_t          user_len;
    const uint8_t  *workstation;      /* UTF-16LE */
    size_t          workstation_len;

    /* from the NTLMv2 client blob (MS-NLMP 2.2.2.7) */
    const uint8_t  *nt_proof;         /* 16 bytes */
    const uint8_t  *blob;             /* "temp": nt + 16 */
    size_t          blob_len;
    uint64_t        client_timestamp;
    const uint8_t  *client_challenge; /* 8 bytes */
    const uint8_t  *av;               /* AV pairs in the blob, up to EOL */
    size_t          av_len;
    uint32_t        av_flags;         /* MsvAvFlags, 0 if absent */
    const uint8_t  *cb_hash;          /* MsvAvChannelBindings or NULL */
    const uint8_t  *target_name;      /* MsvAvTargetName (UTF-16LE) or NULL */
    size_t          target_name_len;

    const uint8_t  *enc_session_key;  /* EncryptedRandomSessionKey */
    size_t          enc_session_key_len;

    int             has_mic;          /* av_flags & KCD_NTLM_AV_FLAG_MIC */
    const uint8_t  *mic;              /* msg + 72 when has_mic */
} kcd_ntlm_authenticate_t;

/*
 * Parse an AUTHENTICATE (Type 3), with every field bounds-checked, the
 * NTLMv2 blob parsed, and, when the MIC is announced, every payload offset
 * required to be >= 88.  Refuses (KCD_NTLM_DENIED) NTLMv1/LM-only
 * (nt_len <= 24), anonymous (empty user and NT response), OEM strings.
 */
int kcd_ntlm_parse_authenticate(const uint8_t *msg, size_t len,
    kcd_ntlm_authenticate_t *auth, const char **err);

/*
 * Checks that need no credentials (MS-NLMP 3.3.2): every AV pair of the
 * CHALLENGE comes back unchanged in the blob (Timestamp included), the
 * MIC is announced (we always send a timestamp), channel bindings per
 * policy against cb_expected (16 bytes, NULL when the connection is not
 * TLS).  now: FILETIME of the current time; the challenge expires after
 * KCD_NTLM_CHALLENGE_TTL seconds.
 */
int kcd_ntlm_check_authenticate(const kcd_ntlm_authenticate_t *auth,
    const uint8_t *challenge_msg, size_t challenge_len,
    const uint8_t *cb_expected, int cb_policy, uint64_t now,
    const char **err);

/*
 * UTF-16LE -> UTF-8 (NUL-terminated); returns the length written, or -1
 * on invalid input or short buffer.  Control characters are refused, so
 * the result is safe to log.
 */
long kcd_ntlm_utf16_to_utf8(const uint8_t *in, size_t inlen, char *out,
    size_t outlen);

/* UTF-8 -> UTF-16LE; returns bytes written, -1 on error */
long kcd_ntlm_utf8_to_utf16(const char *in, size_t inlen, uint8_t *out,
    size_t outlen);

/* FILETIME of a Unix time */
uint64_t kcd_ntlm_filetime(time_t unix_time);


#endif /* _NGX_HTTP_KCD_NTLM_H_INCLUDED_ */
