/*
 * kcd-ntlm-hash: one line of a kcd user file, like htpasswd.
 *
 *   echo 'Password' | kcd-ntlm-hash 'DOMAIN\user'  ->  DOMAIN\user:<NT hash>
 *
 * The password is the first line of stdin (UTF-8, trailing CR/LF removed):
 * never on the command line, where other users could read it in ps.
 * The NT hash is MD4(UTF-16LE(password)) with the module's own MD4, so no
 * OpenSSL legacy provider is needed.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_kcd_ntlm_crypto.h"


#define KCD_HASH_MAX_PASSWORD  1024


static void
usage(void)
{
    fprintf(stderr,
            "usage: kcd-ntlm-hash [DOMAIN\\]user < password-file\n"
            "  reads the password from the first line of stdin and prints\n"
            "  \"[DOMAIN\\]user:<NT hash in hex>\" for kcd_ntlm_user_file\n");
    exit(2);
}


int
main(int argc, char **argv)
{
    int          c;
    size_t       i, len;
    uint8_t      hash[16];
    const char  *name, *p;
    char         pw[KCD_HASH_MAX_PASSWORD + 2];

    if (argc != 2 || argv[1][0] == '\0' || argv[1][0] == '-') {
        usage();
    }

    name = argv[1];

    /*
     * ':' separates the hash in the user file and controls would break
     * its lines; the user part after an optional "DOMAIN\" is mandatory.
     */
    for (p = name; *p; p++) {
        if (*p == ':' || (unsigned char) *p < 0x20 || *p == 0x7f) {
            usage();
        }
    }

    p = strchr(name, '\\');
    if (p && (p == name || p[1] == '\0' || strchr(p + 1, '\\'))) {
        usage();
    }

    /*
     * Unbuffered: no copy of the password stays in a stdio buffer, and
     * nothing after the first line is consumed.
     */
    setvbuf(stdin, NULL, _IONBF, 0);

    len = 0;

    for ( ;; ) {
        c = getchar();

        if (c == EOF || c == '\n') {
            break;
        }

        if (len == KCD_HASH_MAX_PASSWORD) {
            kcd_ntlm_wipe(pw, sizeof(pw));
            fprintf(stderr, "kcd-ntlm-hash: password longer than %d bytes\n",
                    KCD_HASH_MAX_PASSWORD);
            return 1;
        }

        pw[len++] = (char) c;
    }

    if (ferror(stdin)) {
        kcd_ntlm_wipe(pw, sizeof(pw));
        fprintf(stderr, "kcd-ntlm-hash: cannot read the password\n");
        return 1;
    }

    while (len && (pw[len - 1] == '\r' || pw[len - 1] == '\n')) {
        len--;
    }

    if (kcd_ntlm_nt_hash(pw, len, hash) != 0) {
        kcd_ntlm_wipe(pw, sizeof(pw));
        fprintf(stderr, "kcd-ntlm-hash: the password is not valid UTF-8\n");
        return 1;
    }

    kcd_ntlm_wipe(pw, sizeof(pw));

    printf("%s:", name);

    for (i = 0; i < sizeof(hash); i++) {
        printf("%02x", hash[i]);
    }

    printf("\n");

    kcd_ntlm_wipe(hash, sizeof(hash));

    if (fflush(stdout) != 0) {
        return 1;
    }

    return 0;
}
