-- wrk script: GET a read-API path (env READ_PATH) with the API token (env PDCHANNELS_TOKEN).
local token = os.getenv("PDCHANNELS_TOKEN")
local path = os.getenv("READ_PATH")

function request()
  return wrk.format("GET", path, { ["x-api-token"] = token })
end

local bad = 0
function response(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
    if bad <= 3 then io.stderr:write("non-200: " .. status .. " " .. body .. "\n") end
  end
end

function done(summary, latency, requests)
  io.write(string.format(
    "JSON {\"path\":\"%s\",\"requests\":%d,\"rps\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"non2xx\":%d}\n",
    path, summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.errors.status))
end
