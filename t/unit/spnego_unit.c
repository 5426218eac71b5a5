/*
 * Unit tests of the SPNEGO codec (ngx_http_kcd_spnego.c), TAP output.
 *
 * Vectors: tokens made by MIT krb5 1.20 (its SPNEGO initiator with the
 * gss-ntlmssp 1.2 mechanism, and its acceptor's request-mic reply), the
 * DER of RFC 4178 / [MS-SPNG] structures written out from the ASN.1
 * module, and malformed input (every truncation, trailing bytes, wrong
 * types, too many mechanisms).
 *
 * Without arguments: the tests.  With arguments, a helper for
 * t/03-spnego-unit.t, which checks the codec against a live MIT stack:
 *   spnego_unit decode HEX        the decoded fields, one per line
 *   spnego_unit resp STATE MECH HEXTOKEN [HEXMIC]
 *                                 hex of a negTokenResp
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_kcd_spnego.h"


static int  tests, failed;


static void
ok(int cond, const char *name)
{
    tests++;

    if (!cond) {
        failed++;
    }

    printf("%sok %d - %s\n", cond ? "" : "not ", tests, name);
}


static size_t
unhex(const char *hex, unsigned char *out, size_t max)
{
    size_t    n;
    unsigned  hi, lo;

    n = 0;

    while (*hex) {
        if (*hex == ' ' || *hex == '\n') {
            hex++;
            continue;
        }

        if (sscanf(hex, "%1x%1x", &hi, &lo) != 2 || n == max) {
            fprintf(stderr, "bad hex in test data\n");
            exit(2);
        }

        out[n++] = (unsigned char) (hi << 4 | lo);
        hex += 2;
    }

    return n;
}


static int
eq_hex(const unsigned char *p, size_t len, const char *hex)
{
    size_t         n;
    unsigned char  buf[4096];

    n = unhex(hex, buf, sizeof(buf));

    return p != NULL && n == len && memcmp(p, buf, n) == 0;
}


static void
print_hex(const char *label, const unsigned char *p, size_t len)
{
    size_t  i;

    printf("%s ", label);

    for (i = 0; i < len; i++) {
        printf("%02x", p[i]);
    }

    printf("\n");
}


/* MIT krb5 1.20.1 SPNEGO + gss-ntlmssp 1.2.0, gss_init_sec_context() */
static const char  mit_ntlm_init[] =
    "604806062b0601050502a03e303ca00e300c060a2b06010401823702020aa22a0428"
    "4e544c4d5353500001000000178208e2000000000000000000000000000000000602"
    "00000000000f";

/*
 * MIT krb5's SPNEGO acceptor answering a Windows-shaped negTokenInit:
 * request-mic, supportedMech MS-KRB5 (the module's old dead-end reply)
 */
static const char  mit_request_mic[] =
    "a1143012a0030a0103a10b06092a864882f712010202";

/* the MechTypeList of a Windows 10 client, in the order it sends it */
static const char  windows_mech_list[] =
    "302e"
    "060a2b06010401823702021e"          /* NegoEx */
    "06092a864882f712010202"            /* MS-KRB5 */
    "06092a864886f712010202"            /* KRB5 */
    "060a2b06010401823702020a";         /* NTLMSSP */

/* a framed raw Kerberos token: thisMech krb5, TOK_ID 01 00, AP-REQ */
static const char  raw_krb5[] =
    "601306092a864886f71201020201006e0430023000";


static void
test_mit_tokens(void)
{
    size_t              n;
    unsigned char       buf[1024];
    kcd_spnego_token_t  tok;

    n = unhex(mit_ntlm_init, buf, sizeof(buf));

    ok(kcd_spnego_decode(buf, n, &tok) == KCD_SPNEGO_OK,
       "MIT + gss-ntlmssp initial token decodes");
    ok(tok.kind == KCD_SPNEGO_INIT, "it is a negTokenInit");
    ok(tok.nmech_types == 1 && tok.mech_types[0] == KCD_SPNEGO_MECH_NTLMSSP,
       "mechTypes = [NTLMSSP]");
    ok(eq_hex(tok.mech_types_der, tok.mech_types_der_len,
              "300c060a2b06010401823702020a"),
       "mechTypes DER kept exactly as received");
    ok(tok.mech_token_len == 40
       && memcmp(tok.mech_token, "NTLMSSP\0\1\0\0\0", 12) == 0,
       "mechToken is the 40-byte NTLM NEGOTIATE");
    ok(tok.mech_list_mic == NULL && !tok.has_req_flags,
       "no mechListMIC, no reqFlags");
    ok(tok.neg_state == KCD_SPNEGO_STATE_ABSENT, "no negState in an init");
    kcd_spnego_token_free(&tok);

    n = unhex(mit_request_mic, buf, sizeof(buf));

    ok(kcd_spnego_decode(buf, n, &tok) == KCD_SPNEGO_OK
       && tok.kind == KCD_SPNEGO_RESP
       && tok.neg_state == KCD_SPNEGO_STATE_REQUEST_MIC
       && tok.has_supported_mech
       && tok.supported_mech == KCD_SPNEGO_MECH_MS_KRB5
       && tok.response_token == NULL && tok.mech_list_mic == NULL,
       "MIT acceptor reply: negTokenResp request-mic, supportedMech MS-KRB5");
    kcd_spnego_token_free(&tok);

    n = unhex(raw_krb5, buf, sizeof(buf));

    ok(kcd_spnego_decode(buf, n, &tok) == KCD_SPNEGO_NOT_SPNEGO,
       "framed raw Kerberos is not SPNEGO");
    ok(kcd_spnego_this_mech(buf, n) == KCD_SPNEGO_MECH_KRB5,
       "thisMech of raw Kerberos is krb5");

    n = unhex(mit_ntlm_init, buf, sizeof(buf));
    ok(kcd_spnego_this_mech(buf, n) == KCD_SPNEGO_MECH_UNKNOWN
       && kcd_spnego_this_mech((const unsigned char *) "NTLMSSP", 7)
          == KCD_SPNEGO_MECH_UNKNOWN
       && kcd_spnego_this_mech(buf, 1) == KCD_SPNEGO_MECH_UNKNOWN,
       "thisMech of SPNEGO, NTLMSSP, a truncated header: not krb5");

    /*
     * fuzz/corpus/spnego_decode/this-mech-high-tag-form: [APPLICATION 0]
     * in the high-tag-number form (7f 00) around thisMech NTLMSSP; the
     * decoder does not see a framed token in it, neither may this_mech
     */
    n = unhex("7f0000060a2b06010401823702020a0000000000a0022900", buf,
              sizeof(buf));
    ok(kcd_spnego_this_mech(buf, n) == KCD_SPNEGO_MECH_UNKNOWN
       && kcd_spnego_decode(buf, n, &tok) == KCD_SPNEGO_ERROR,
       "thisMech of a high-tag-number [APPLICATION 0]: none");
    n = unhex("7f00" "1306092a864886f71201020201006e0430023000", buf,
              sizeof(buf));
    ok(kcd_spnego_this_mech(buf, n) == KCD_SPNEGO_MECH_UNKNOWN,
       "raw Kerberos in the high-tag-number form: not krb5");
    n = unhex(raw_krb5, buf, sizeof(buf));

    ok(kcd_spnego_decode((const unsigned char *) "NTLMSSP\0\1\0\0\0", 12,
                         &tok) == KCD_SPNEGO_ERROR,
       "raw NTLMSSP is an error for the codec");
}


static void
test_encode(void)
{
    int                 rc;
    size_t              n, len;
    unsigned char       buf[1024], *out;
    kcd_spnego_token_t  tok;

    static const kcd_spnego_mech_t  windows[] = {
        KCD_SPNEGO_MECH_NEGOEX, KCD_SPNEGO_MECH_MS_KRB5,
        KCD_SPNEGO_MECH_KRB5, KCD_SPNEGO_MECH_NTLMSSP
    };
    static const kcd_spnego_mech_t  ntlm[] = { KCD_SPNEGO_MECH_NTLMSSP };
    static const kcd_spnego_mech_t  krb5[] = { KCD_SPNEGO_MECH_KRB5 };
    static const kcd_spnego_mech_t  bad[] = { KCD_SPNEGO_MECH_UNKNOWN };

    /* the mech list of a Windows client */
    rc = kcd_spnego_encode_mech_list(windows, 4, &out, &len);
    ok(rc == KCD_SPNEGO_OK && eq_hex(out, len, windows_mech_list),
       "MechTypeList DER of NegoEx, MS-KRB5, KRB5, NTLMSSP");
    kcd_spnego_free(out);

    /* encoding what MIT sent gives MIT's bytes */
    n = unhex(mit_ntlm_init, buf, sizeof(buf));
    rc = kcd_spnego_encode_init(ntlm, 1, buf + 34, 40, &out, &len);
    ok(rc == KCD_SPNEGO_OK && len == n && memcmp(out, buf, n) == 0,
       "negTokenInit encoding equals MIT's token byte for byte");
    kcd_spnego_free(out);

    /* the upstream shape: [krb5] + AP-REQ-like token */
    rc = kcd_spnego_encode_init(krb5, 1,
                                (const unsigned char *) "\x60\x02\x01\x00", 4,
                                &out, &len);
    ok(rc == KCD_SPNEGO_OK
       && eq_hex(out, len, "6023" "06062b0601050502" "a019" "3017"
                           "a00d300b06092a864886f712010202"
                           "a2060404" "60020100"),
       "negTokenInit [krb5] + mechToken, DER written out from RFC 4178");
    kcd_spnego_free(out);

    rc = kcd_spnego_encode_init(windows, 4, (const unsigned char *) "x", 1,
                                &out, &len);
    ok(rc == KCD_SPNEGO_OK && kcd_spnego_decode(out, len, &tok) == 0
       && tok.kind == KCD_SPNEGO_INIT && tok.nmech_types == 4
       && tok.mech_types[0] == KCD_SPNEGO_MECH_NEGOEX
       && tok.mech_types[1] == KCD_SPNEGO_MECH_MS_KRB5
       && tok.mech_types[2] == KCD_SPNEGO_MECH_KRB5
       && tok.mech_types[3] == KCD_SPNEGO_MECH_NTLMSSP
       && eq_hex(tok.mech_types_der, tok.mech_types_der_len,
                 windows_mech_list)
       && tok.mech_token_len == 1 && tok.mech_token[0] == 'x',
       "Windows-shaped negTokenInit round trip");
    kcd_spnego_token_free(&tok);
    kcd_spnego_free(out);

    rc = kcd_spnego_encode_init(windows, 4, NULL, 0, &out, &len);
    ok(rc == KCD_SPNEGO_OK && kcd_spnego_decode(out, len, &tok) == 0
       && tok.mech_token == NULL, "negTokenInit without mechToken");
    kcd_spnego_token_free(&tok);
    kcd_spnego_free(out);

    ok(kcd_spnego_encode_init(bad, 1, NULL, 0, &out, &len)
       == KCD_SPNEGO_ERROR, "UNKNOWN mechanism cannot be encoded");
    ok(kcd_spnego_encode_init(NULL, 0, NULL, 0, &out, &len)
       == KCD_SPNEGO_ERROR, "empty mechanism list cannot be encoded");

    /* negTokenResp, DER written out */
    rc = kcd_spnego_encode_resp(KCD_SPNEGO_STATE_ACCEPT_INCOMPLETE,
                                KCD_SPNEGO_MECH_NTLMSSP,
                                (const unsigned char *) "abc", 3, NULL, 0,
                                &out, &len);
    ok(rc == KCD_SPNEGO_OK
       && eq_hex(out, len, "a11c301a" "a0030a0101"
                           "a10c060a2b06010401823702020a" "a205040361 6263"),
       "negTokenResp accept-incomplete, supportedMech NTLMSSP, token");
    kcd_spnego_free(out);

    rc = kcd_spnego_encode_resp(KCD_SPNEGO_STATE_ACCEPT_COMPLETED,
                                KCD_SPNEGO_MECH_UNKNOWN, NULL, 0,
                                (const unsigned char *) "0123456789abcdef",
                                16, &out, &len);
    ok(rc == KCD_SPNEGO_OK
       && eq_hex(out, len, "a11b3019" "a0030a0100" "a3120410"
                           "30313233343536373839616263646566"),
       "negTokenResp accept-completed with mechListMIC");
    ok(rc == KCD_SPNEGO_OK && kcd_spnego_decode(out, len, &tok) == 0
       && tok.kind == KCD_SPNEGO_RESP
       && tok.neg_state == KCD_SPNEGO_STATE_ACCEPT_COMPLETED
       && !tok.has_supported_mech && tok.mech_list_mic_len == 16
       && memcmp(tok.mech_list_mic, "0123456789abcdef", 16) == 0,
       "negTokenResp round trip");
    kcd_spnego_token_free(&tok);
    kcd_spnego_free(out);

    rc = kcd_spnego_encode_resp(KCD_SPNEGO_STATE_REJECT,
                                KCD_SPNEGO_MECH_UNKNOWN, NULL, 0, NULL, 0,
                                &out, &len);
    ok(rc == KCD_SPNEGO_OK && eq_hex(out, len, "a1073005a0030a0102"),
       "negTokenResp reject");
    kcd_spnego_free(out);

    rc = kcd_spnego_encode_resp(KCD_SPNEGO_STATE_ABSENT,
                                KCD_SPNEGO_MECH_UNKNOWN,
                                (const unsigned char *) "z", 1, NULL, 0,
                                &out, &len);
    ok(rc == KCD_SPNEGO_OK && eq_hex(out, len, "a1073005a2030401 7a"),
       "negTokenResp with only a responseToken");
    kcd_spnego_free(out);

    ok(kcd_spnego_encode_resp(7, KCD_SPNEGO_MECH_UNKNOWN, NULL, 0, NULL, 0,
                              &out, &len) == KCD_SPNEGO_ERROR,
       "negState out of range cannot be encoded");

    /* [MS-SPNG] negTokenInit2 */
    rc = kcd_spnego_encode_init2(windows, 4, NULL, 0, &out, &len);
    ok(rc == KCD_SPNEGO_OK && kcd_spnego_decode(out, len, &tok) == 0
       && tok.kind == KCD_SPNEGO_INIT2 && tok.nmech_types == 4
       && tok.hint_name_len == 36
       && memcmp(tok.hint_name, "not_defined_in_RFC4178@please_ignore",
                 36) == 0,
       "negTokenInit2 with negHints round trip");
    kcd_spnego_token_free(&tok);
    kcd_spnego_free(out);

    rc = kcd_spnego_encode_init2(ntlm, 1, (const unsigned char *) "T1", 2,
                                 &out, &len);
    ok(rc == KCD_SPNEGO_OK && kcd_spnego_decode(out, len, &tok) == 0
       && tok.kind == KCD_SPNEGO_INIT2 && tok.mech_token_len == 2
       && tok.mech_types[0] == KCD_SPNEGO_MECH_NTLMSSP,
       "negTokenInit2 carrying a mechToken");
    kcd_spnego_token_free(&tok);
    kcd_spnego_free(out);
}


static void
test_malformed(void)
{
    int                 all_error, rc;
    size_t              n, i, len;
    unsigned char       buf[1024], *out;
    kcd_spnego_token_t  tok;

    static const kcd_spnego_mech_t  windows[] = {
        KCD_SPNEGO_MECH_NEGOEX, KCD_SPNEGO_MECH_MS_KRB5,
        KCD_SPNEGO_MECH_KRB5, KCD_SPNEGO_MECH_NTLMSSP
    };

    n = unhex(mit_ntlm_init, buf, sizeof(buf));

    all_error = 1;
    for (i = 0; i < n; i++) {
        if (kcd_spnego_decode(buf, i, &tok) == KCD_SPNEGO_OK) {
            kcd_spnego_token_free(&tok);
            all_error = 0;
        }
    }
    ok(all_error, "every truncation of an initial token is refused");

    buf[n] = 0;
    ok(kcd_spnego_decode(buf, n + 1, &tok) == KCD_SPNEGO_ERROR,
       "trailing byte after the token is refused");

    /* flip every byte: never a crash, and a decoded token stays bounded */
    for (i = 0; i < n; i++) {
        buf[i] ^= 0xff;
        if (kcd_spnego_decode(buf, n, &tok) == KCD_SPNEGO_OK) {
            if (tok.mech_token_len > n || tok.mech_types_der_len > n
                || tok.nmech_types > KCD_SPNEGO_MAX_MECHS)
            {
                all_error = 0;
            }
            kcd_spnego_token_free(&tok);
        }
        buf[i] ^= 0xff;
    }
    ok(all_error, "byte flips give no out-of-bounds field");

    ok(kcd_spnego_decode(buf, 0, &tok) == KCD_SPNEGO_ERROR
       && kcd_spnego_decode(NULL, 5, &tok) == KCD_SPNEGO_ERROR,
       "empty input refused");

    /* mechTypes that is not a SEQUENCE: an OCTET STRING in [0] */
    n = unhex("a00c300aa0080406300406022a03", buf, sizeof(buf));
    ok(kcd_spnego_decode(buf, n, &tok) == KCD_SPNEGO_ERROR,
       "mechTypes of the wrong type refused");

    /* mechTypes a SEQUENCE of something else than OIDs */
    n = unhex("a0093007a0053003020101", buf, sizeof(buf));
    ok(kcd_spnego_decode(buf, n, &tok) == KCD_SPNEGO_ERROR,
       "mechTypes holding an INTEGER refused");

    /* negState 7 */
    n = unhex("a1073005a0030a0107", buf, sizeof(buf));
    ok(kcd_spnego_decode(buf, n, &tok) == KCD_SPNEGO_ERROR,
       "negState out of range refused");

    /* a [2] alternative of NegotiationToken */
    n = unhex("a2073005a0030a0100", buf, sizeof(buf));
    ok(kcd_spnego_decode(buf, n, &tok) == KCD_SPNEGO_ERROR,
       "unknown NegotiationToken alternative refused");

    /* inner length larger than the outer one */
    n = unhex("a1073005a0040a0100", buf, sizeof(buf));
    ok(kcd_spnego_decode(buf, n, &tok) == KCD_SPNEGO_ERROR,
       "inner length past the outer one refused");

    /* 33 mechanisms */
    {
        unsigned char  *p;
        size_t          j;
        unsigned char   big[1024];

        /* [0] { SEQUENCE { [0] { SEQUENCE OF: 33 * 12 = 0x18c bytes */
        p = big;
        p += unhex("a0820198" "30820194" "a0820190" "3082018c", p, 16);

        for (j = 0; j < 33; j++) {
            p += unhex("060a2b06010401823702020a", p, 12);
        }

        ok(kcd_spnego_decode(big, (size_t) (p - big), &tok)
           == KCD_SPNEGO_ERROR, "more than 32 mechanisms refused");
    }

    ok(kcd_spnego_decode(buf, KCD_SPNEGO_MAX_TOKEN + 1, &tok)
       == KCD_SPNEGO_ERROR, "oversized input refused before parsing");

    /* a negTokenInit with a framed header around garbage */
    n = unhex("600806062b06010505020000", buf, sizeof(buf));
    ok(kcd_spnego_decode(buf, n, &tok) == KCD_SPNEGO_ERROR,
       "SPNEGO framing around garbage refused");

    /* the unframed negTokenInit some clients send after a 401 */
    rc = kcd_spnego_encode_init(windows, 4, (const unsigned char *) "t", 1,
                                &out, &len);
    ok(rc == 0 && kcd_spnego_decode(out + 10, len - 10, &tok) == 0
       && tok.kind == KCD_SPNEGO_INIT && tok.nmech_types == 4,
       "unframed negTokenInit decodes");
    kcd_spnego_token_free(&tok);
    kcd_spnego_free(out);
}


static int
helper(int argc, char **argv)
{
    size_t              n, mic_len, len;
    unsigned char       in[65536], mic[64], *out;
    kcd_spnego_token_t  tok;
    kcd_spnego_mech_t   mech;
    size_t              i;

    if (argc == 3 && strcmp(argv[1], "decode") == 0) {
        n = unhex(argv[2], in, sizeof(in));

        switch (kcd_spnego_decode(in, n, &tok)) {
        case KCD_SPNEGO_OK:
            break;
        case KCD_SPNEGO_NOT_SPNEGO:
            printf("result not-spnego\n");
            return 0;
        default:
            printf("result error\n");
            return 0;
        }

        printf("result ok\nkind %s\n", tok.kind == KCD_SPNEGO_INIT ? "init"
               : tok.kind == KCD_SPNEGO_INIT2 ? "init2" : "resp");

        printf("mechs");
        for (i = 0; i < tok.nmech_types; i++) {
            printf(" %s", kcd_spnego_mech_name(tok.mech_types[i]));
        }
        printf("\n");

        print_hex("mech_types_der", tok.mech_types_der,
                  tok.mech_types_der_len);
        print_hex("mech_token", tok.mech_token, tok.mech_token_len);
        printf("neg_state %d\n", tok.neg_state);
        printf("supported_mech %s\n", tok.has_supported_mech
               ? kcd_spnego_mech_name(tok.supported_mech) : "-");
        print_hex("response_token", tok.response_token,
                  tok.response_token_len);
        print_hex("mech_list_mic", tok.mech_list_mic, tok.mech_list_mic_len);

        kcd_spnego_token_free(&tok);
        return 0;
    }

    if ((argc == 5 || argc == 6) && strcmp(argv[1], "resp") == 0) {
        mech = KCD_SPNEGO_MECH_UNKNOWN;
        if (strcmp(argv[3], "ntlmssp") == 0) {
            mech = KCD_SPNEGO_MECH_NTLMSSP;
        } else if (strcmp(argv[3], "krb5") == 0) {
            mech = KCD_SPNEGO_MECH_KRB5;
        }

        n = unhex(argv[4], in, sizeof(in));
        mic_len = argc == 6 ? unhex(argv[5], mic, sizeof(mic)) : 0;

        if (kcd_spnego_encode_resp(atoi(argv[2]), mech, n ? in : NULL, n,
                                   mic_len ? mic : NULL, mic_len, &out, &len)
            != KCD_SPNEGO_OK)
        {
            return 1;
        }

        print_hex("token", out, len);
        kcd_spnego_free(out);
        return 0;
    }

    fprintf(stderr, "usage: spnego_unit [decode HEX | resp STATE MECH HEX "
            "[MIC]]\n");
    return 2;
}


int
main(int argc, char **argv)
{
    if (argc > 1) {
        return helper(argc, argv);
    }

    test_mit_tokens();
    test_encode();
    test_malformed();

    printf("1..%d\n", tests);

    return failed ? 1 : 0;
}
