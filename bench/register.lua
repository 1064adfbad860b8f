-- wrk script for bench/registration.py: POST a registration with a unique email per request.
--
-- Usage: wrk ... -s bench/register.lua URL -- PATH PREFIX [FIRST_DELAY_MS CONNS_PER_THREAD]
--   PATH    the request path, e.g. /api/v1/events/1/registrations
--   PREFIX  a tag unique to this wrk invocation (e.g. "r1-real-m"), so that the warm-up and the
--           measured run of one database never reuse an address
--   FIRST_DELAY_MS, CONNS_PER_THREAD  hold each connection's first request back this long
--           (default 0: no delay). wrk opens all its connections at once and starts each one's
--           latency clock when it writes; a server whose event loop is already saturated accepts
--           late connections slowly, so without the delay the first requests of the last
--           connections wait up to seconds and dominate p99. With it every connection is
--           established while the server is idle and the percentiles describe steady state.
--           wrk does not count the delay as latency.
-- Emails are PREFIX-t<thread>-<n>@bench.example.org: thread ids come from setup(), n from a
-- per-thread counter, so no two requests of a run share an address.
-- done() prints one line starting with "BENCH_JSON " holding the counts the harness checks
-- (status codes seen by response(), socket errors, latency percentiles in microseconds).

local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
  table.insert(threads, thread)
end

function init(args)
  path = args[1] or "/"
  prefix = args[2] or "run"
  counter = 0
  statuses = {}
  headers = { ["Content-Type"] = "application/json" }
  first_delay = tonumber(args[3] or "0") or 0
  held_back = tonumber(args[4] or "0") or 0
  delays = 0
end

-- Called before every request once defined; the first CONNS_PER_THREAD calls of a thread are the
-- first requests of its connections (nothing is sent before they return).
function delay()
  delays = delays + 1
  if delays <= held_back then
    return first_delay
  end
  return 0
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"name":"Bench Person %d","email":"%s-t%d-%d@bench.example.org"}',
    counter, prefix, tid, counter
  )
  return wrk.format("POST", path, headers, body)
end

function response(status, hdrs, body)
  statuses[status] = (statuses[status] or 0) + 1
end

local function json_statuses(all)
  local parts = {}
  for code, n in pairs(all) do
    table.insert(parts, string.format('"%d":%d', code, n))
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
  local all = {}
  for _, thread in ipairs(threads) do
    local seen = thread:get("statuses") or {}
    for code, n in pairs(seen) do
      all[code] = (all[code] or 0) + n
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"statuses":%s,"latency_us":{"p50":%d,"p75":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    json_statuses(all),
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean
  ))
end
