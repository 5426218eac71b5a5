# ngx_http_kcd_module — build, test and demo.
#
#   make          build build/ngx_http_kcd_module.so against the installed nginx
#   make deps     install every Debian package the project needs (idempotent)
#   make test     deps + build + every test suite (prove)
#   make demo     deps + build + a throwaway domain, backend and nginx to try
#   make bench    benchmarks (bench/), results to stdout
#   make asan     build-asan/ngx_http_kcd_module.so: ASan + UBSan build (t/90)
#   make fuzz     libFuzzer harnesses of fuzz/targets, FUZZ_SECONDS each (60)
#   make deb      Debian package libnginx-mod-http-kcd (dh_nginx) in build/deb/

NGINX_SRC  ?= /usr/share/nginx/src
BUILD      ?= build
NGINX_BIN  ?= /usr/sbin/nginx
CC         ?= cc
KCD_CFLAGS ?= -Wall -Wextra -Wno-unused-parameter -Werror -g -O2

SRCS = $(wildcard ngx_http_*.c) $(wildcard ngx_http_*.h) config

.PHONY: all module deps test unit demo demo-stop bench clean tools fuzz asan deb

all: module tools

module: $(BUILD)/ngx_http_kcd_module.so

$(BUILD)/nginx/objs/Makefile: config debian/changelog
	@test -d $(NGINX_SRC)/auto || { echo "no nginx source tree in $(NGINX_SRC): run 'make deps' (package nginx-dev) or set NGINX_SRC"; exit 1; }
	rm -rf $(BUILD)/nginx
	mkdir -p $(BUILD)
	cp -a $(NGINX_SRC) $(BUILD)/nginx
	cd $(BUILD)/nginx && \
	  sh $(CURDIR)/tools/configure-nginx.sh $(CURDIR) $(NGINX_BIN)

$(BUILD)/ngx_http_kcd_module.so: $(BUILD)/nginx/objs/Makefile $(SRCS)
	$(MAKE) -C $(BUILD)/nginx -f objs/Makefile modules \
	    CFLAGS="$$(sed -n 's/^CFLAGS = //p' $(BUILD)/nginx/objs/Makefile) $(KCD_CFLAGS)"
	# a new inode: running workers keep the old code mapped
	cp $(BUILD)/nginx/objs/ngx_http_kcd_module.so $@.tmp && mv -f $@.tmp $@

tools: $(BUILD)/kcd-ntlm-hash $(BUILD)/ntlm_unit $(BUILD)/spnego_unit

$(BUILD)/kcd-ntlm-hash: tools/kcd-ntlm-hash.c ngx_http_kcd_ntlm_crypto.c ngx_http_kcd_ntlm_crypto.h ngx_http_kcd_names.c ngx_http_kcd_names.h
	@mkdir -p $(BUILD)
	$(CC) $(KCD_CFLAGS) -I. -o $@ tools/kcd-ntlm-hash.c ngx_http_kcd_ntlm_crypto.c ngx_http_kcd_names.c -lcrypto -lpthread

$(BUILD)/ntlm_unit: t/unit/ntlm_unit.c ngx_http_kcd_ntlm.c ngx_http_kcd_ntlm.h ngx_http_kcd_ntlm_crypto.c ngx_http_kcd_ntlm_crypto.h ngx_http_kcd_names.c ngx_http_kcd_names.h
	@mkdir -p $(BUILD)
	$(CC) $(KCD_CFLAGS) -I. -o $@ t/unit/ntlm_unit.c ngx_http_kcd_ntlm.c ngx_http_kcd_ntlm_crypto.c ngx_http_kcd_names.c -lcrypto -lpthread

$(BUILD)/spnego_unit: t/unit/spnego_unit.c ngx_http_kcd_spnego.c ngx_http_kcd_spnego.h
	@mkdir -p $(BUILD)
	$(CC) $(KCD_CFLAGS) -I. -o $@ t/unit/spnego_unit.c ngx_http_kcd_spnego.c -lcrypto

deps:
	sh tools/deps.sh

test: deps all asan
	prove -I t/lib t/

unit: $(BUILD)/ntlm_unit $(BUILD)/spnego_unit
	$(BUILD)/ntlm_unit
	$(BUILD)/spnego_unit

demo: deps all
	sh tools/demo.sh start

demo-stop:
	sh tools/demo.sh stop

bench: deps all
	sh bench/run.sh

# the NTLM handshake load client of the benchmarks (bench/README.md); the
# drivers build it with BUILD=<their temporary directory>
KCD_CLIENT_SRCS = bench/kcd-handshake.c bench/kcd_ntlm_client.c \
                  ngx_http_kcd_ntlm.c ngx_http_kcd_ntlm_crypto.c \
                  ngx_http_kcd_names.c

$(BUILD)/kcd-handshake: $(KCD_CLIENT_SRCS) bench/kcd_ntlm_client.h
	@mkdir -p $(BUILD)
	$(CC) -O2 -Wall -Wextra -Wno-unused-parameter -Werror -I. -Ibench \
	    -o $@ $(KCD_CLIENT_SRCS) -lcrypto -lpthread

FUZZ_SECONDS ?= 60

# The module with AddressSanitizer + UBSan, in its own build directory;
# t/90-sanitizers.t runs the nginx suites against it (nginx started with
# the runtimes in LD_PRELOAD, see t/README.md).
ASAN_BUILD ?= build-asan
ASAN_CFLAGS ?= -O1 -fno-omit-frame-pointer -fsanitize=address,undefined

asan: $(ASAN_BUILD)/nodlclose.so
	$(MAKE) BUILD=$(ASAN_BUILD) KCD_CFLAGS="$(KCD_CFLAGS) $(ASAN_CFLAGS)" \
	    $(ASAN_BUILD)/ngx_http_kcd_module.so

$(ASAN_BUILD)/nodlclose.so: t/sanitizer/nodlclose.c
	@mkdir -p $(ASAN_BUILD)
	$(CC) -shared -fPIC -O2 -o $@ t/sanitizer/nodlclose.c

fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) BUILD=$(BUILD) sh fuzz/fuzz.sh run

# dpkg-buildpackage writes next to the source tree: build a copy of the
# committed and working files in build/deb/src, packages land in build/deb/
deb:
	rm -rf $(BUILD)/deb
	mkdir -p $(BUILD)/deb/src
	tar -c --exclude-vcs --exclude-vcs-ignores --exclude='./build' \
	    --exclude='./debian/build' -f - . | tar -x -C $(BUILD)/deb/src -f -
	cd $(BUILD)/deb/src && dpkg-buildpackage -b -uc -us
	@ls $(BUILD)/deb/*.deb

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
