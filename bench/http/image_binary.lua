-- wrk script of the HTTP benchmark (bench/http/run.sh): the same image infer as
-- image_json.lua, with the binary tensor extension: a small JSON header (`binary_data_size`)
-- followed by the 602,112 raw little-endian FP32 bytes; Inference-Header-Content-Length
-- gives the header's length (HEADER_BYTES). The body is made by bench/http/check.py
-- image-bodies and passed in BODY_FILE. The output `logits` still comes back as JSON.
local f = assert(io.open(assert(os.getenv("BODY_FILE"), "BODY_FILE not set"), "rb"))
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.headers["Inference-Header-Content-Length"] = assert(os.getenv("HEADER_BYTES"), "HEADER_BYTES not set")
