-- wrk script: POST /v1/channels/{channel}/conversations/{conversation}/messages, a reply the hub
-- sends through the channel's provider app (postMessage), spread over the conversations c0 ..
-- c{N-1} of the channel. The conversations must exist with a source_user and an end_user.
--
-- wrk -t2 -c16 -d20s -s bench/send.lua http://127.0.0.1:PORT
--   env PDCHANNELS_TOKEN; PDCHANNELS_CHANNEL (default bench); PDCHANNELS_CONVERSATIONS (default 30)

local token = os.getenv("PDCHANNELS_TOKEN")
local channel = os.getenv("PDCHANNELS_CHANNEL") or "bench"
local conversations = tonumber(os.getenv("PDCHANNELS_CONVERSATIONS") or "30")

local thread_seq = 0
function setup(thread)
  thread_seq = thread_seq + 1
  thread:set("offset", thread_seq)
end

local counter = 0

function request()
  counter = counter + 1
  local path = string.format("/v1/channels/%s/conversations/c%d/messages", channel,
    (counter * 7 + (offset or 0)) % conversations)
  return wrk.format("POST", path, {
    ["Content-Type"] = "application/json",
    ["x-api-token"] = token,
  }, '{"message":"Thanks, we are on it: the blue one ships tomorrow."}')
end

local refused = 0
function response(status, headers, body)
  if status < 200 or status > 299 then
    refused = refused + 1
    if refused <= 3 then io.stderr:write("non-2xx: " .. status .. " " .. body .. "\n") end
  end
end

function done(summary, latency, requests)
  io.write(string.format(
    "JSON {\"requests\":%d,\"seconds\":%.3f,\"rps\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"errors\":%d,\"non2xx\":%d}\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
