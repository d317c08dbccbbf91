# Builds and runs the libFuzzer targets with clang, AddressSanitizer and UBSan.
#   make fuzz [FUZZ_SECONDS=600]      runs every target for FUZZ_SECONDS each
# Targets: fuzz_loader (model files), fuzz_v2 (KServe v2 request bodies, gzip/deflate),
# fuzz_cache (cached values as read back from Redis).
# Seeds: tests/data/models plus the conformance models when ../shared is present for the
# loader; fuzz_v2 writes its own seeds (DAB_FUZZ_SEEDS). Targets link an archive of the
# library so that each pulls in only the objects it uses.
# Findings (crash-*, leak-*, timeout-*) are written to tests/fuzz/findings/.

CLANG   := clang
FBUILD  := build/fuzz
FFLAGS  := -std=c11 -D_GNU_SOURCE -O1 -g -fno-omit-frame-pointer -march=native \
           -fsanitize=address,undefined -fno-sanitize-recover=undefined -fopenmp=libgomp \
           -Ibuild/gen -Isrc
FLIBS   := -lhiredis -lprotobuf-c -ldnnl -lmicrohttpd -ljansson -lz -lm -lpthread -lgomp
LIB_SRC := $(filter-out src/cli/%,$(sort $(wildcard src/*/*.c src/*/*/*.c)))
LIB_OBJ := $(LIB_SRC:%.c=$(FBUILD)/%.o) $(FBUILD)/gen/onnx.pb-c.o
FUZZ_SECONDS ?= 60
FUZZ_ENV := ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1

.PHONY: run run-loader run-v2 run-cache
run: run-loader run-v2 run-cache

run-loader: $(FBUILD)/fuzz_loader
	@mkdir -p $(FBUILD)/corpus-loader tests/fuzz/findings $(FBUILD)/seeds
	cp tests/data/models/*.onnx $(FBUILD)/seeds/
	if [ -d ../shared/onnx-conformance/node ]; then \
	  for d in ../shared/onnx-conformance/node/*/; do \
	    cp "$$d/model.onnx" "$(FBUILD)/seeds/$$(basename $$d).onnx"; done; fi
	$(FUZZ_ENV) $(FBUILD)/fuzz_loader \
	  -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -timeout=20 -max_len=65536 \
	  -artifact_prefix=tests/fuzz/findings/ $(FBUILD)/corpus-loader $(FBUILD)/seeds \
	  2>&1 | tail -n 25

run-v2: $(FBUILD)/fuzz_v2
	@mkdir -p $(FBUILD)/corpus-v2 $(FBUILD)/seeds-v2 tests/fuzz/findings
	DAB_FUZZ_SEEDS=$(FBUILD)/seeds-v2 $(FUZZ_ENV) $(FBUILD)/fuzz_v2 \
	  -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -timeout=20 -max_len=16384 \
	  -artifact_prefix=tests/fuzz/findings/ $(FBUILD)/corpus-v2 $(FBUILD)/seeds-v2 \
	  2>&1 | tail -n 25

run-cache: $(FBUILD)/fuzz_cache
	@mkdir -p $(FBUILD)/corpus-cache $(FBUILD)/seeds-cache tests/fuzz/findings
	DAB_FUZZ_SEEDS=$(FBUILD)/seeds-cache $(FUZZ_ENV) $(FBUILD)/fuzz_cache \
	  -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -timeout=20 -max_len=16384 \
	  -artifact_prefix=tests/fuzz/findings/ $(FBUILD)/corpus-cache $(FBUILD)/seeds-cache \
	  2>&1 | tail -n 25

build/gen/onnx.pb-c.c:
	$(MAKE) build/gen/onnx.pb-c.h

$(FBUILD)/gen/onnx.pb-c.o: build/gen/onnx.pb-c.c
	@mkdir -p $(dir $@)
	$(CLANG) $(FFLAGS) -fsanitize=fuzzer-no-link -w -c $< -o $@

# -MMD -MP: objects are rebuilt when a header they include changes.
$(FBUILD)/%.o: %.c build/gen/onnx.pb-c.c
	@mkdir -p $(dir $@)
	$(CLANG) $(FFLAGS) -MMD -MP -fsanitize=fuzzer-no-link -c $< -o $@

-include $(LIB_OBJ:.o=.d)

$(FBUILD)/libdabba.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(FBUILD)/fuzz_loader: tests/fuzz/fuzz_loader.c $(FBUILD)/libdabba.a
	$(CLANG) $(FFLAGS) -fsanitize=fuzzer $^ -o $@ $(FLIBS)

$(FBUILD)/fuzz_cache: tests/fuzz/fuzz_cache.c $(FBUILD)/libdabba.a
	$(CLANG) $(FFLAGS) -fsanitize=fuzzer $^ -o $@ $(FLIBS)

$(FBUILD)/fuzz_v2: tests/fuzz/fuzz_v2.c $(FBUILD)/libdabba.a
	$(CLANG) $(FFLAGS) -fsanitize=fuzzer $^ -o $@ $(FLIBS)
