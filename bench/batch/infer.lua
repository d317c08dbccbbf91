-- wrk script of the dynamic-batching benchmark (bench/batch/run.sh): every request is the same
-- KServe v2 JSON infer of ONE sample, the same bytes for every server under test. The body is
-- written by `bench/batch/batch.py body` (a held-out digit for digits_cnn, a fixed random
-- vector for mlp_wide) and passed in BODY_FILE; run.sh checked each server's answer to it.
--
-- No request()/response() callbacks: wrk then builds the request once and runs no Lua per
-- response, which keeps the load generator as light as it can be on the server's own cores.
local f = assert(io.open(assert(os.getenv("BODY_FILE"), "BODY_FILE not set"), "rb"))
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
