/*
 * Preloaded with the sanitizer runtimes (t/90-sanitizers.t): dlclose()
 * does nothing, so that a module unloaded by a reload keeps its code
 * mapped and a leak report at exit can name its functions instead of
 * "<unknown module>".
 */

int
dlclose(void *handle)
{
    (void) handle;
    return 0;
}
