-- wrk script: GET the inbox's pages with a session cookie (env PDCHANNELS_COOKIE), each request
-- the next path of the file PDCHANNELS_PATHS (one per line), round robin.
local cookie = os.getenv("PDCHANNELS_COOKIE")
local paths = {}
for line in io.lines(os.getenv("PDCHANNELS_PATHS")) do
  if line ~= "" then paths[#paths + 1] = line end
end
local at = 0

function request()
  at = at % #paths + 1
  return wrk.format("GET", paths[at], { ["Cookie"] = cookie })
end

local bad = 0
function response(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
    if bad <= 3 then io.stderr:write("non-200: " .. status .. " " .. body:sub(1, 300) .. "\n") end
  end
end

function done(summary, latency, requests)
  io.write(string.format(
    "JSON {\"requests\":%d,\"rps\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"non2xx\":%d,\"errors\":%d}\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
