-- wrk script of the HTTP benchmark (bench/http/run.sh): a KServe v2 infer of one
-- 1x3x224x224 FP32 image to image_cnn with the tensor as JSON `data` (about 1.6 MB).
-- The body is made by bench/http/check.py image-bodies and passed in BODY_FILE; the output
-- `logits` comes back as JSON, so only the request encoding differs from image_binary.lua.
local f = assert(io.open(assert(os.getenv("BODY_FILE"), "BODY_FILE not set"), "rb"))
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
