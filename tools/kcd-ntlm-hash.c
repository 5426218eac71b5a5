/*
 * kcd-ntlm-hash: one line of a kcd user file, like htpasswd.
 *
 *   kcd-ntlm-hash 'DOMAIN\user'                 prompts twice on a terminal
 *   kcd-ntlm-hash 'DOMAIN\user' < password      the first line of stdin
 *
 * prints "DOMAIN\user:<NT hash>" on stdout (SPEC "NT-hash user file").
 *
 * The password is taken as raw bytes: only the newline that ends the line
 * is removed (no CR, no white space), so a password with a backslash, a
 * leading blank or a trailing blank is hashed as typed.  It must be UTF-8
 * and must not be empty (the NT hash of the empty password would let
 * anyone log on; the module refuses such a line too).  It is never taken
 * from the command line, where other users could read it in ps.
 *
 * The NT hash is MD4(UTF-16LE(password)) with the module's own MD4, so no
 * OpenSSL legacy provider is needed.
 *
 * Exit status: 0 line printed, 1 no usable password (empty, not UTF-8,
 * too long, the two entries differ, read error), 2 usage.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "ngx_http_kcd_ntlm_crypto.h"


#define KCD_HASH_MAX_PASSWORD  1024


static void
usage(void)
{
    fprintf(stderr,
            "usage: kcd-ntlm-hash [DOMAIN\\]user\n"
            "  prints \"[DOMAIN\\]user:<NT hash in hex>\" for "
            "kcd_ntlm_user_file;\n"
            "  the password is asked twice on a terminal, else read from "
            "the first\n"
            "  line of standard input (raw bytes, only the final newline "
            "removed)\n");
    exit(2);
}


/*
 * One line of fd 0 into pw (at most KCD_HASH_MAX_PASSWORD bytes), without
 * its final '\n'.  Byte by byte with read(): no copy stays in a stdio
 * buffer and nothing after the line is consumed.
 * Returns the length, -1 on a read error, -2 when too long.
 */

static ssize_t
read_line(char *pw)
{
    char     c;
    size_t   len;
    ssize_t  n;

    len = 0;

    for ( ;; ) {
        n = read(0, &c, 1);

        if (n < 0 && errno == EINTR) {
            continue;
        }

        if (n < 0) {
            return -1;
        }

        if (n == 0 || c == '\n') {
            return (ssize_t) len;
        }

        if (len == KCD_HASH_MAX_PASSWORD) {
            return -2;
        }

        pw[len++] = c;
    }
}


/* a prompt on the terminal (stderr) with echo off while the user types */

static ssize_t
read_tty(const char *prompt, char *pw)
{
    int             restore;
    ssize_t         len;
    struct termios  old, quiet;

    restore = 0;

    /* echo off before the prompt: nothing typed after it is shown */

    if (tcgetattr(0, &old) == 0) {
        quiet = old;
        quiet.c_lflag &= ~(ECHO | ECHONL);
        quiet.c_lflag |= ICANON;
        restore = (tcsetattr(0, TCSANOW, &quiet) == 0);
    }

    fputs(prompt, stderr);
    fflush(stderr);

    len = read_line(pw);

    if (restore) {
        tcsetattr(0, TCSANOW, &old);
    }

    fputs("\n", stderr);

    return len;
}


static int
fail(char *pw, char *again, const char *msg)
{
    kcd_ntlm_wipe(pw, KCD_HASH_MAX_PASSWORD);
    kcd_ntlm_wipe(again, KCD_HASH_MAX_PASSWORD);
    fprintf(stderr, "kcd-ntlm-hash: %s\n", msg);
    return 1;
}


int
main(int argc, char **argv)
{
    int          tty;
    size_t       i;
    ssize_t      len, len2;
    uint8_t      hash[16];
    const char  *name, *p;
    char         pw[KCD_HASH_MAX_PASSWORD], again[KCD_HASH_MAX_PASSWORD];

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

    memset(again, 0, sizeof(again));

    tty = isatty(0);

    if (tty) {
        len = read_tty("Password: ", pw);

    } else {
        len = read_line(pw);
    }

    if (len == -1) {
        return fail(pw, again, "cannot read the password");
    }

    if (len == -2) {
        return fail(pw, again, "password longer than 1024 bytes");
    }

    if (len == 0) {
        return fail(pw, again, "empty password refused");
    }

    if (tty) {
        len2 = read_tty("Again: ", again);

        if (len2 != len || memcmp(pw, again, len) != 0) {
            return fail(pw, again, "the passwords do not match");
        }
    }

    if (kcd_ntlm_nt_hash(pw, len, hash) != 0) {
        return fail(pw, again, "the password is not valid UTF-8");
    }

    kcd_ntlm_wipe(pw, sizeof(pw));
    kcd_ntlm_wipe(again, sizeof(again));

    printf("%s:", name);

    for (i = 0; i < sizeof(hash); i++) {
        printf("%02x", hash[i]);
    }

    printf("\n");

    kcd_ntlm_wipe(hash, sizeof(hash));

    if (fflush(stdout) != 0) {
        fprintf(stderr, "kcd-ntlm-hash: cannot write: %s\n", strerror(errno));
        return 1;
    }

    return 0;
}
