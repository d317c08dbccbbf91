-- wrk script of the HTTP benchmark (bench/http/run.sh): every request is a KServe v2 JSON
-- infer of ONE digit to digits_mlp, the same bytes for every server under test.
--
-- The sample is row 0 of examples/data/digits_test_pixels.npy (held out from training;
-- label 1 in digits_test_labels.npy), 64 pixels in [0,1], written exactly (they are
-- multiples of 1/16). bench/http/check.py verifies this body against the .npy file, and
-- run.sh extracts the body from the `wrk.body = '...'` line below for its curl checks, so
-- keep that line on one line.
--
-- No request()/response() callbacks: wrk then builds the request once and does not run Lua
-- per response, which keeps the load generator as light as it can be on a 2-core machine.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"inputs":[{"name":"pixels","shape":[1,64],"datatype":"FP32","data":[0,0,0.5,1,0.9375,0.5,0,0,0,0.0625,1,1,1,0.125,0,0,0,0.125,1,1,0.625,0,0,0,0,0.125,1,1,0.75,0,0,0,0,0.375,1,1,0.8125,0,0,0,0,0.0625,1,1,0.6875,0,0,0,0,0,1,1,0.625,0,0,0,0,0,0.4375,0.9375,0.9375,0,0,0]}]}'
