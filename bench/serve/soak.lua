-- wrk script for the soak (bench/serve/soak.sh): a fixed mix of valid and
-- malformed requests, every answer counted by status, every valid answer logged
-- for checking against the CLI afterwards.
--
-- EBM_SOAK_DIR holds the request files written by soak_bodies.py:
--   requests.txt  one line per kind: "KIND METHOD PATH WEIGHT FILE" (KIND valid-* or bad-*)
--   the body FILEs (FILE.raw: the whole request, head included, sent as is)
-- EBM_SOAK_TOTAL responses in all (split evenly between wrk threads); each
-- thread stops at its share and writes counts-ID.txt ("status CODE N",
-- "sent KIND N") and done-ID. Each thread logs one line per
-- 200 answer to valid-ID.log: "kind id energy score ood p_value sha256-header".
local dir = assert(os.getenv("EBM_SOAK_DIR"), "set EBM_SOAK_DIR")
local total = tonumber(os.getenv("EBM_SOAK_TOTAL") or "100000")
local threads = {}
local nthreads = 0

function setup(thread)
  nthreads = nthreads + 1
  thread:set("id", nthreads)
  table.insert(threads, thread)
end

local reqs = {}      -- the weighted cycle of prepared requests
local kinds = {}     -- kind of each entry of reqs
local share, answered, log = 0, 0, nil
local status_counts, sent_counts, answered_valid, bad_200 = {}, {}, 0, 0
local next_i = 0

function init(args)
  local f = assert(io.open(dir .. "/requests.txt"))
  for line in f:lines() do
    local kind, method, path, weight, file = line:match("^(%S+) (%S+) (%S+) (%d+) (%S+)$")
    if kind then
      local bf = assert(io.open(dir .. "/" .. file, "rb"))
      local body = bf:read("*a")
      bf:close()
      -- A ".raw" file is a whole request as sent (chunked bodies, odd framing
      -- headers); any other file is a body wrk frames with Content-Length.
      local r = file:match("%.raw$") and body or wrk.format(method, path, {["Content-Type"] = "application/json"}, body)
      for _ = 1, tonumber(weight) do
        table.insert(reqs, r)
        table.insert(kinds, kind)
      end
    end
  end
  f:close()
  -- Interleave the kinds: a fixed stride through the weighted list.
  share = math.floor(total / tonumber(os.getenv("EBM_SOAK_THREADS") or "2"))
  log = assert(io.open(dir .. "/valid-" .. id .. ".log", "w"))
  next_i = id * 7919
end

local inflight = {}  -- kinds in send order; wrk answers a connection in order but
                     -- interleaves connections, so kinds are only counted when sent.

function request()
  next_i = next_i + 37
  local i = (next_i % #reqs) + 1
  local k = kinds[i]
  sent_counts[k] = (sent_counts[k] or 0) + 1
  return reqs[i]
end

function response(status, headers, body)
  if answered >= share then return end  -- answers after the stop (same event-loop turn) are not counted
  answered = answered + 1
  status_counts[status] = (status_counts[status] or 0) + 1
  if status == 200 then
    local sha = headers["X-Model-SHA256"] or "-"
    local id_ = body:match('"id":"(img%-%d+)"')
    if id_ then
      -- OIP: outputs in order energy, ood, p_value, score (keys sorted by name in each output)
      local function out(name)
        return body:match('"data":%[([^%]]*)%],"datatype":"[%w]+","name":"' .. name .. '"')
      end
      log:write("oip ", id_, " ", out("energy") or "?", " ", out("score") or "?", " ", out("ood") or "?", " ",
                out("p_value") or "?", " ", sha, "\n")
    elseif body:match('"results":%[') then
      local e = body:match('"energy":([-%d%.eE+]+)')
      local s = body:match('"score":([-%d%.eE+]+)[,}]')
      local o = body:match('"ood":(%a+)')
      local p = body:match('"p_value":([-%d%.eE+]+)')
      log:write("score img-0 ", e or "?", " ", s or "?", " ", o or "?", " ", p or "?", " ", sha, "\n")
    else
      log:write("unknown - ? ? ? ? ", sha, "\n")
    end
  end
  if answered == share then
    log:flush()
    -- Counts go through a file: wrk copies no tables between threads.
    local c = io.open(dir .. "/counts-" .. id .. ".txt", "w")
    for k, v in pairs(status_counts) do c:write("status ", k, " ", v, "\n") end
    for k, v in pairs(sent_counts) do c:write("sent ", k, " ", v, "\n") end
    c:close()
    local d = io.open(dir .. "/done-" .. id, "w")
    d:write(answered, "\n")
    d:close()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  io.write(string.format(
    'EBM_SOAK {"responses":%d,"seconds":%.3f,"errors_connect":%d,"errors_read":%d,"errors_write":%d,' ..
    '"errors_timeout":%d,"errors_status":%d,"p50_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f}\n',
    summary.requests, summary.duration / 1e6, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.timeout, summary.errors.status, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000))
end
