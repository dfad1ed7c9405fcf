-- wrk script: POST one request body (a JSON file, path in $EBM_BODY) to the URL
-- given on the command line, e.g.
--   EBM_BODY=out/bench/serve/score-1.json wrk -t2 -c16 -d60s -s bench/serve/score.lua http://127.0.0.1:8080/v1/score
-- Non-2xx answers are counted by wrk ("Non-2xx or 3xx responses"), so a run with errors shows them.
local path = os.getenv("EBM_BODY")
assert(path, "set EBM_BODY to a JSON request body file")
local f = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

-- Latency percentiles in one machine-readable line for the harness.
function done(summary, latency, requests)
  io.write(string.format("EBM_WRK {\"requests\":%d,\"seconds\":%.3f,\"errors_status\":%d,\"errors_connect\":%d,\"errors_read\":%d,\"errors_timeout\":%d,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f}\n",
    summary.requests, summary.duration / 1e6, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
