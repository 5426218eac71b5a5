/*
 * A minimal NTLMv2 client (MS-NLMP 3.1.5): NEGOTIATE as Windows 10 sends
 * it and an AUTHENTICATE answering a given CHALLENGE with a valid
 * NTProofStr, MsvAvFlags MIC bit, MIC and optional channel bindings, from
 * a known NT hash.  Shared by the fuzz harness of the success path
 * (fuzz/ntlm_verify.c) and the load client (bench/kcd-handshake.c).  No
 * nginx types; OpenSSL for HMAC-MD5; NTOWFv2 from the codec's crypto file
 * (checked against the MS-NLMP 4.2 vectors by t/00-ntlm-unit.t).
 */

#ifndef _KCD_NTLM_CLIENT_H_INCLUDED_
#define _KCD_NTLM_CLIENT_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


typedef struct {
    const uint8_t  *nt_hash;          /* 16 bytes */
    const uint8_t  *user;             /* UTF-16LE */
    size_t          user_len;
    const uint8_t  *domain;           /* UTF-16LE */
    size_t          domain_len;
    const uint8_t  *workstation;      /* UTF-16LE */
    size_t          workstation_len;
    uint8_t         client_challenge[8];
    int             mic;              /* send MsvAvFlags MIC + a MIC */
    const uint8_t  *cb_hash;          /* 16 bytes or NULL: no pair */
    const uint8_t  *target_name;      /* UTF-16LE MsvAvTargetName or NULL */
    size_t          target_name_len;
    const uint8_t  *extra_av;         /* raw pairs added before EOL */
    size_t          extra_av_len;
} kcd_ntlmc_params_t;


/* NEGOTIATE (Type 1), 40 bytes; returns its length or -1 */
long kcd_ntlmc_negotiate(uint8_t *out, size_t outlen);

/*
 * AUTHENTICATE (Type 3) answering type2; type1 is the NEGOTIATE sent
 * before (for the MIC).  Returns the length written to out, or -1 when
 * type2 is not a usable CHALLENGE or out is too small.
 */
long kcd_ntlmc_authenticate(const kcd_ntlmc_params_t *p,
    const uint8_t *type1, size_t type1_len,
    const uint8_t *type2, size_t type2_len,
    uint8_t *out, size_t outlen);


#endif /* _KCD_NTLM_CLIENT_H_INCLUDED_ */
