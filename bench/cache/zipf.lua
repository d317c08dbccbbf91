-- wrk script of the cache benchmark (bench/cache/run.sh): every request POSTs one of the
-- bodies in BODY_FILE (one KServe v2 JSON body per line, written by make_bodies.py), line r
-- chosen with probability proportional to 1 / r^ZIPF_S (Zipf; s = 1.0 unless ZIPF_S says
-- otherwise), so line 1 is the most popular request.
--
-- Each wrk thread loads the file and formats every request once in init(), builds the
-- CDF over the lines once, and draws per request with one random number and a binary
-- search. Each thread seeds its own generator from SEED and its thread number (set in
-- setup()), so a run replays the same request sequence per thread. No response()
-- callback: wrk then runs no Lua per answer, which keeps the load generator light on the
-- server's cores (the hit ratio comes from the server's /metrics instead).
--
-- Env: BODY_FILE (required), ZIPF_S (1.0), SEED (1).
local threads = 0

function setup(thread)
    threads = threads + 1
    thread:set("thread_no", threads)
end

local reqs, cdf, n

function init(args)
    local path = assert(os.getenv("BODY_FILE"), "BODY_FILE not set")
    local f = assert(io.open(path, "rb"))
    local headers = { ["Content-Type"] = "application/json" }
    reqs = {}
    for line in f:lines() do
        if #line > 0 then
            reqs[#reqs + 1] = wrk.format("POST", nil, headers, line)
        end
    end
    f:close()
    n = #reqs
    assert(n > 0, "no bodies in " .. path)
    local s = tonumber(os.getenv("ZIPF_S") or "1.0")
    cdf = {}
    local sum = 0
    for r = 1, n do
        sum = sum + 1 / (r ^ s)
        cdf[r] = sum
    end
    for r = 1, n do
        cdf[r] = cdf[r] / sum
    end
    cdf[n] = 1.0
    math.randomseed(tonumber(os.getenv("SEED") or "1") * 1000 + (thread_no or 0))
end

function request()
    local u = math.random()
    local lo, hi = 1, n
    while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        if cdf[mid] < u then
            lo = mid + 1
        else
            hi = mid
        end
    end
    return reqs[lo]
end
