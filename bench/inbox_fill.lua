-- wrk script: fills a hub with PDCHANNELS_TOTAL messages over PDCHANNELS_CONVERSATIONS
-- conversations of channel `wa` through POST /v1/channels/messages/receive (the hub's own write
-- path: triggers, search index), then stops. Message i is conversation c(i mod N)'s, from
-- `cust(i mod N)`; its text holds `w<k>` for each k in 10, 100, ..., 1,000,000 dividing i, and
-- message 777,777 holds `needle`. Run with -t2 (the threads split the numbers between them).
-- A thread stops once the hub stored as many of its messages as its share of the total: wrk
-- calls the first thread's request() once to check it and never sends that one (`m1`), and
-- stopping at the last number sent dropped the requests still in flight, so the fill could end
-- short of its total and the bench wait forever. A few numbers past the total may be stored.
local token = os.getenv("PDCHANNELS_TOKEN")
local total = tonumber(os.getenv("PDCHANNELS_TOTAL"))
local conversations = tonumber(os.getenv("PDCHANNELS_CONVERSATIONS"))
local threads = 0

function setup(thread)
  thread:set("index", threads)
  threads = threads + 1
end

local i = nil
local stored = 0

function request()
  i = i and (i + 2) or (index + 1)
  local c = i % conversations
  local words = ""
  for _, k in ipairs({10, 100, 1000, 10000, 100000, 1000000}) do
    if i % k == 0 then words = words .. " w" .. k end
  end
  if i == 777777 then words = words .. " needle" end
  local body = string.format(
    '{"id":"m%d","channel_id":"wa","conversation_id":"c%d","sender_id":"cust%d",' ..
    '"message":"hello %d, is the blue one still in stock?%s","status":"sent",' ..
    '"created_at":"2024-05-01T10:20:30.000Z","attachments":[]}',
    i, c, c, i, words)
  return wrk.format("POST", "/v1/channels/messages/receive", {
    ["Content-Type"] = "application/json",
    ["x-api-token"] = token,
  }, body)
end

function response(status, headers, body)
  if status == 200 then
    stored = stored + 1
    -- This thread's share: the numbers index + 1, index + 3, ... up to total.
    if stored >= math.floor((total - index - 1) / 2) + 1 then wrk.thread:stop() end
  else
    io.stderr:write("non-200: " .. status .. " " .. body .. "\n")
  end
end
