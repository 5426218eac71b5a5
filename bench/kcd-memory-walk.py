# gdb Python script (bench/kcd-memory.pl --walk): what a worker keeps per
# idle HTTP connection, by walking the live structures of the stopped
# worker.  Needs the module's debug information (the build has -g) for
# the nginx types.  Sizes are glibc malloc() chunks (header included).
#
#   gdb -q -p PID -batch -x bench/kcd-memory-walk.py

import collections
import os
import re

import gdb

inferior = gdb.selected_inferior()


def u64(addr):
    return int.from_bytes(inferior.read_memory(addr, 8).tobytes(), 'little')


def chunk(addr):
    # the size field of a glibc chunk, in front of the pointer malloc() gave
    return u64(addr - 8) & ~7


def symbol(name):
    try:
        return int(gdb.parse_and_eval('(long) &' + name))
    except gdb.error:
        return None


kcd_cleanup = symbol('ngx_http_kcd_conn_cleanup')
kc_type = gdb.lookup_type('ngx_http_kcd_conn_t')
kc_size = kc_type.sizeof
cln_size = gdb.lookup_type('ngx_pool_cleanup_t').sizeof

cycle = gdb.parse_and_eval('*(ngx_cycle_t **) &ngx_cycle')
conns = cycle['connections']

n = 0
total = collections.Counter()

for i in range(int(cycle['connection_n'])):
    c = conns[i]

    if (int(c['fd']) == -1 or int(c['pool']) == 0 or int(c['idle']) == 0
            or int(c['listening']) == 0):
        continue

    n += 1
    pool = c['pool']

    p = pool
    while int(p) != 0:
        total['c->pool blocks'] += 1
        total['c->pool block chunks'] += chunk(int(p))
        total['c->pool bytes used'] += int(p['d']['last']) - int(p)
        p = p['d']['next']

    large = pool['large']
    while int(large) != 0:
        if int(large['alloc']) != 0:
            total['c->pool large allocations'] += chunk(int(large['alloc']))
        large = large['next']

    cln = pool['cleanup']
    while int(cln) != 0:
        if int(cln['handler']) == kcd_cleanup:
            total['module: c->pool cleanup + ngx_http_kcd_conn_t (in the block)'] \
                += cln_size + kc_size
            kc = cln['data'].cast(kc_type.pointer())

            if int(kc['identity']) != 0:
                total['module: the connection\'s identity (malloc)'] += \
                    chunk(int(kc['identity']))

            if int(kc['ntlm']) != 0:
                total['module: pending NTLM handshake (malloc)'] += \
                    chunk(int(kc['ntlm']))

            if int(kc['evidence']['data']) != 0:
                total['module: Kerberos evidence (malloc)'] += \
                    chunk(int(kc['evidence']['data']))

        cln = cln['next']

print('walk: %d idle connections' % n)

for k in sorted(total):
    unit = '' if k == 'c->pool blocks' else ' bytes'
    print('walk: %-60s %7.1f%s per connection'
          % (k, total[k] / max(n, 1), unit))

# the heap as a whole (main arena): its size and how much of it malloc()
# holds free, e.g. holes left by the handshakes in progress at the peak:
# resident, but nobody's

path = '/tmp/kcd-memory-walk-%d.xml' % inferior.pid
gdb.execute('set $kcd_f = (void *) fopen("%s", "w")' % path)
gdb.execute('call (int) malloc_info(0, $kcd_f)', to_string=True)
gdb.execute('call (int) fclose($kcd_f)', to_string=True)

heap = free = None
with open(path) as f:
    for line in f:
        m = re.search(r'<system type="current" size="(\d+)"', line)
        if m:
            heap = int(m.group(1))
        m = re.search(r'<total type="rest" count="\d+" size="(\d+)"', line)
        if m:
            free = int(m.group(1))

os.remove(path)

if heap is not None and free is not None:
    print('heap: %d %d' % (heap, free))
