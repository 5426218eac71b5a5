/*
 * kcd-profile-hold: an LD_PRELOAD shim for the benchmark's "what if" run
 * (bench/kcd-vs-proxy.pl --what-if).  It opens one krb5 context when
 * nginx starts and never frees it.  MIT's profile library shares the
 * parsed krb5.conf between contexts only while one of them holds it; the
 * module's per-request GSSAPI calls otherwise open, read and parse
 * krb5.conf again for every new context.  Holding one context shows what
 * a long-lived context in the module itself would save.
 */

#include <krb5.h>

static krb5_context  kcd_hold_ctx;

__attribute__((constructor)) static void
kcd_profile_hold(void)
{
    (void) krb5_init_context(&kcd_hold_ctx);
}
