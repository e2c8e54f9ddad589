-- wrk script: POST /v1/channels/messages/receive with a new message id on every request, spread
-- over 1,000 conversations of the channel `bench`. Each wrk thread numbers its own messages.
--
-- wrk -t2 -c64 -d30s -s bench/receive.lua http://127.0.0.1:PORT   (env PDCHANNELS_TOKEN)
--
-- With PDCHANNELS_WHATSAPP_SENDERS=1 (bench/mirror.sh c) the customer of conversation i is
-- 55119{i:08}@s.whatsapp.net, the Pipedrive fixture's person i, and every other thousand
-- messages are the company's (sender `bench`), so that the notes mirror links and writes.

local thread_seq = 0
local token = os.getenv("PDCHANNELS_TOKEN")

function setup(thread)
  thread_seq = thread_seq + 1
  thread:set("prefix", string.format("%st%d-%d", os.getenv("PDCHANNELS_PREFIX") or "", thread_seq, os.time()))
end

local counter = 0
local whatsapp = os.getenv("PDCHANNELS_WHATSAPP_SENDERS") == "1"

local function sender(c)
  if not whatsapp then return string.format("s%d", c) end
  if math.floor(counter / 1000) % 2 == 1 then return "bench" end
  return string.format("55119%08d@s.whatsapp.net", c)
end

function request()
  counter = counter + 1
  local c = counter % 1000
  local body = string.format(
    '{"id":"%s-%d","channel_id":"bench","sender_id":"%s","conversation_id":"c%d",' ..
    '"message":"Hello, is the blue one still in stock?","status":"sent",' ..
    '"created_at":"2024-05-01T10:20:30.000Z","attachments":[]}',
    prefix, counter, sender(c), c)
  return wrk.format("POST", "/v1/channels/messages/receive", {
    ["Content-Type"] = "application/json",
    ["x-api-token"] = token,
  }, body)
end

local non200 = 0
function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    if non200 <= 3 then io.stderr:write("non-200: " .. status .. " " .. body .. "\n") end
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
