# dabba - build, test, run and benchmark.
#   make          build bin/dabba
#   make run      serve / run the bundled example repository
#   make test     every test suite; ends with "N passed, N failed"
#   make bench    benchmarks against onnxruntime-node (results in bench/results/)
#   make fuzz     libFuzzer targets (FUZZ_SECONDS per target)
#   make deps     install the Debian packages the build and tests need
# SANITIZE=1 builds with AddressSanitizer + UndefinedBehaviorSanitizer into bin/san/;
# SANITIZE=thread with ThreadSanitizer into bin/tsan/ (for the threaded suites: test_sched,
# test_cache, test_cache_redis).

CC       ?= cc
ARCH     ?= -march=native
SANITIZE ?= 0
DEBUG    ?= 0

DEB_PACKAGES := build-essential pkg-config libprotobuf-c-dev protobuf-c-compiler libonnx-dev \
                libdnnl-dev libjansson-dev libxxhash-dev libmicrohttpd-dev libsqlite3-dev \
                libhiredis-dev redis-server python3-numpy clang libclang-rt-14-dev \
                libonnx-testdata zlib1g-dev python3-prometheus-client
# Only `make bench`, `make examples` and tools/ need these (peers, load generator, training).
EXTRA_PACKAGES := wrk nginx-light python3-fastapi python3-uvicorn python3-uvloop \
                  python3-httptools python3-torch python3-sklearn python3-onnx

ifeq ($(SANITIZE),thread)
  BUILD := build/tsan
  BINDIR := bin/tsan
  OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=thread
  LDSAN := -fsanitize=thread
else ifeq ($(SANITIZE),1)
  BUILD := build/san
  BINDIR := bin/san
  OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDSAN := -fsanitize=address,undefined
else ifeq ($(DEBUG),1)
  BUILD := build/debug
  BINDIR := bin/debug
  OPT := -O0 -g
  LDSAN :=
else
  BUILD := build/release
  BINDIR := bin
  OPT := -O3 -g
  LDSAN :=
endif

GEN      := build/gen
CFLAGS   := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter -Wno-format-truncation $(OPT) $(ARCH) \
            -fopenmp -fPIC -I$(GEN) -Isrc
GENFLAGS := -std=c11 -D_GNU_SOURCE $(OPT) $(ARCH) -fPIC -w
LDLIBS   := -lhiredis -lprotobuf-c -ldnnl -lmicrohttpd -ljansson -lz -lm -lpthread -fopenmp $(LDSAN)
# The SIMD kernels pick their instruction sets per function (target attributes) and are
# chosen at run time by CPUID, so they build for the baseline ISA whatever ARCH says.
ifeq ($(shell uname -m),x86_64)
$(BUILD)/src/kernels/simd/%.o: CFLAGS := $(filter-out $(ARCH),$(CFLAGS)) -march=x86-64
endif

SRC      := $(sort $(wildcard src/*/*.c src/*/*/*.c))
LIB_SRC  := $(filter-out src/cli/%,$(SRC))
CLI_SRC  := $(filter src/cli/%,$(SRC))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/onnx.pb-c.o
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BINDIR)/tests/%)
DEPS     := $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)

.PHONY: all run test unit bench fuzz deps extra-deps install-packages clean examples format

all: $(BINDIR)/dabba

$(GEN)/onnx.pb-c.c $(GEN)/onnx.pb-c.h: /usr/include/onnx/onnx.proto
	@mkdir -p $(GEN)/onnx
	cp $< $(GEN)/onnx.proto
	cd $(GEN) && protoc-c --c_out=. onnx.proto

$(BUILD)/gen/onnx.pb-c.o: $(GEN)/onnx.pb-c.c
	@mkdir -p $(dir $@)
	$(CC) $(GENFLAGS) -c $< -o $@

$(BUILD)/%.o: %.c $(GEN)/onnx.pb-c.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BINDIR)/libdabba.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BINDIR)/dabba: $(CLI_OBJ) $(BINDIR)/libdabba.a
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BINDIR)/tests/%: tests/unit/%.c tests/unit/test.h $(BINDIR)/libdabba.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(BINDIR)/libdabba.a -o $@ $(LDLIBS)

-include $(DEPS)

deps:
	@$(MAKE) --no-print-directory install-packages PACKAGES="$(DEB_PACKAGES)"
	@# Node.js and npm (for the test oracle) from Debian only when none is installed.
	@command -v npm >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; }

extra-deps: deps
	@$(MAKE) --no-print-directory install-packages PACKAGES="$(EXTRA_PACKAGES)"

install-packages:
	@missing=""; for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

unit: $(UNIT_BIN)

# The test oracle (onnxruntime-node) lives in tests/node_modules, installed on demand.
tests/node_modules/onnxruntime-node/package.json:
	cd tests && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund --silent

test: deps $(BINDIR)/dabba $(UNIT_BIN) tests/node_modules/onnxruntime-node/package.json
	BINDIR=$(BINDIR) tests/run.sh

run: deps $(BINDIR)/dabba
	BINDIR=$(BINDIR) tools/serve_examples.sh

bench: extra-deps $(BINDIR)/dabba tests/node_modules/onnxruntime-node/package.json
	BINDIR=$(BINDIR) bench/run.sh

FUZZ_SECONDS ?= 60
fuzz: deps
	$(MAKE) -f tests/fuzz/fuzz.mk FUZZ_SECONDS=$(FUZZ_SECONDS) run

examples: extra-deps
	/usr/bin/python3 tools/train_examples.py

format:
	clang-format -i $(SRC) $(UNIT_SRC)

clean:
	rm -rf build bin
